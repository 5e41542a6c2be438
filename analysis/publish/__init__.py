"""What the analysis hands to people: `summary.md` (`summary`), and the analysis run, its artifact
and the W&B Report (`report`)."""
