"""Online scoring: ``vaepipe serve`` (Ray Serve) over the registered model's raw-row contract."""
