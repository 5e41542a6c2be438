"""What runs on a GPU box: the training program (train) and the sweep agents (local, launch)."""
