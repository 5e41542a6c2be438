"""Training-speed benchmark of the real training path (SPEC section 9).

    python -m mae_gap.bench [--device cuda|cpu] [--config full|tiny] [--batch N] [--compile] [--steps N]
                            [--repeats R] [--data_dir PATH] [--peak-tflops X] [--json PATH]
    python -m mae_gap.bench --suite gpu --out DIR        # the whole GPU check in one call (< 8 min)

It builds the model and the data exactly as training does (`fit()` with the real MAEGapModule;
synthetic uint8 images by default, cached on disk like every source, or `--data_dir`), warms up,
then prints one table (and `--json PATH` writes the same numbers):

- train img/s of the Lightning run (images / epoch wall time of the timed epochs);
- step time: median of per-step timings, device-synchronized, of the Lightning step
  (on_train_batch_start -> on_train_batch_end, a Callback) and of a plain PyTorch loop over the
  same model, data, optimizer, schedule and precision (augment -> forward -> backward -> AdamW ->
  scheduler), so Lightning's overhead is measured, not assumed; on a CPU the two alternate step
  by step (so the shared machine's load hits both alike) and torch runs one thread (--threads);
  on a GPU the plain loop runs after the Lightning run, and the "events" epochs time the GPU's
  own timeline with CUDA events (no host sync) while the "sync" epochs synchronize per step;
- an epoch's wall time (on_train_epoch_start -> end of its last batch) / the sum of its steps;
- analytic FLOP per image from the config (`flop_breakdown`), cross-checked with
  torch.utils.flop_counter.FlopCounterMode on one real step; achieved TFLOP/s; MFU against
  `--peak-tflops` (defaults: bf16 dense peaks of H100 SXM, H100 PCIe, H200, B200, A100);
- device-side augmentation img/s (gather + `augment` of device-resident uint8 batches);
- peak device memory (torch.cuda.max_memory_allocated; on a CPU the process's peak RSS);
- the fixed cost: a fresh process, from its start to the end of its first optimizer step, with a
  warm data cache (what every sweep run pays before it trains);
- on a GPU, host syncs inside the step (torch.cuda.set_sync_debug_mode over warm-up steps).

No timed assertion lives in the tests: speed is measured here.

Modules: `__main__` (the command line and the table), `benchmark` (the run, its references and
figures), `timing` (clocks and the Callbacks that time fit()), `flops`, `suite` (the GPU check).
"""
