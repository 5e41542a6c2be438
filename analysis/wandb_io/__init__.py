"""The W&B layer that `agent` and `analysis` both stand on (it imports neither): every private W&B
part (`compat`), the reader of offline run folders (`offline_runs`) and W&B's sweep-path rule
(`sweep_path`)."""
