"""Gates: probes (pure functions on arrays), decisions with confidence intervals, the registry.

Modules
-------
``registry``     the public contract: ``REGISTRY``, ``gate_cases``, ``run_case`` and the records
``records``      ``Gate``, ``GateCase``, ``GateResult`` (the JSON record, docs/design.md#report-json), ``GateConfig``
``context``      ``GateContext``: manifest, per-split samples, inputs and model scores, cached
``probes``       grouped-CV logistic-regression probes and their feature sets
``perturb``      paired counterfactuals: core and arc parts of stamp − ctrl, arc on another LRG, ring average
``reference_scorers``  pure arc reader, pure core reader, their mixtures (calibration of the model gates)
``decision``     LRG-bootstrap intervals and pass / fail / inconclusive verdicts
``data_gates``   gates that need only data; ``model_gates``: gates that need a model
``synthetic``    small manifests with planted shortcuts and reference scorers (self-tests, benchmark)
``command``      the ``shortcutgates gate`` command
"""
