"""The statistics, pure functions of the tidy table: the original study's Γ, bins and ρ (`tube`),
conditions and references (`conditions`), direct contrasts at equal MSE (`contrasts`), Γ's null
(`gamma_null`), cross-run ρ (`cross_run`), the seed planner (`planner`), and the one typed result
they make together (`gap`)."""
