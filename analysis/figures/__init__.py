"""The figures, drawn from the tidy table and the typed statistics: shared style (`style`), the
tube scatter and the per-alpha figures (`plots`), the equal-MSE contrasts (`matched`)."""
