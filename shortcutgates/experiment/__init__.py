"""The experiment side of the pipeline: run the experiments, measure, and report.

==============  ==================================================================================
``run``         ``shortcutgates experiment``: simulate or read paired data, build, train, measure,
                write ``results.json`` and the report (docs/design.md#experiment)
``measure``     the measurements of one trained configuration (gate records, AUROCs, core-LR AUCs)
``report``      ``shortcutgates report``: ``results.json`` -> ``report.md`` / ``report.html``
``figures``     the report's PNG figures (pure functions from arrays/records to files)
``text``        the report's sentences, each computed from the measurements
``demo``        ``shortcutgates demo``: the whole path on simulated data with laptop-sized defaults
==============  ==================================================================================

Importing this package imports nothing else (the CLI loads the sub-module of the command it runs).
"""
