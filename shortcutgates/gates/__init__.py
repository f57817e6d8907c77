"""Gates: probes (pure functions on arrays), decisions with confidence intervals, the registry.

Modules
-------
``contract``     ``Measurement`` (what a gate function returns), ``Direction``, ``Role``
``registry``     the public contract: ``REGISTRY`` (keyword rows), ``gate_cases``, ``run_case``, ``load_config``
``records``      ``Gate`` (a row), ``GateCase``, ``GateResult`` (the JSON record, docs/design.md#report-json), ``GateConfig``
``context``      ``GateContext``: manifest, per-split samples, inputs and model scores, cached
``probes``       grouped-CV logistic-regression probes, their feature sets, refitted-bootstrap intervals
``perturb``      paired counterfactuals: core and arc parts of stamp − ctrl, arc on another LRG, ring average
``reference_scorers``  pure arc reader, pure core reader, their mixtures (calibration of the model gates)
``decision``     LRG-bootstrap intervals and the verdict rule (``judge``; docs/design.md#verdict-rule)
``data_gates``   gates that need only data; ``model_gates``: gates that need a model
``synthetic``    small manifests with planted shortcuts and reference scorers (self-tests, benchmark)
``command``      the ``shortcutgates gate`` command

The gate functions, records, decision and context never import the registry; no module is in an
import cycle (``tests/test_import_graph.py``).
"""
