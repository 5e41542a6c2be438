"""A sweep's runs into the tidy table: through the W&B API (`api`, with its `cache` and `retries`) or
from offline run folders (`offline`); the table itself (`tidy`), the runs and their states (`runs`)
and which runs the statistics use (`selection`)."""
