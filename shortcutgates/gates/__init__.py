"""Gates: probes (pure functions on arrays), decisions with confidence intervals, the registry."""
