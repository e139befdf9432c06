"""Demand forecasting: seasonal models on statsmodels, automatic model choice, public holidays, and
honest "no forecast" results.

Callers import the submodule they need: ``choice`` for the entry points (``choice.forecast``,
``choice.fit``, ``choice.predict``, ``choice.staleness``, ``choice.State``), ``base`` for the values
(``base.Settings``, ``base.Forecast``, ``base.NoForecast``, ``base.Outcome``).

- ``base``: settings, forecast values, the transformed space, the local calendar, error quantiles;
- ``harmonic``, ``seasonal_naive``, ``mstl``, ``holt_winters``: one model each;
- ``holidays``: public holiday dates from the ``holidays`` package, as local day numbers;
- ``spread``: the band's width by time of day, a factor on a model's pooled band;
- ``choice``: the registry, rolling-origin validation, ``auto``, and the per-cycle entry points.

Adding a model: write ``<name>.py`` with ``NAME`` and ``fit(training, settings)`` returning a frozen
dataclass that satisfies ``base.Fitted`` (``predict_z`` from any origin after the fit, ``paths_z``
for rolling-origin validation, ``in_sample_mae`` and ``widened`` for the band's calibration, all in
the transformed space ``z``); add it to ``choice.MODELS`` (and to ``choice.AUTO_CANDIDATES`` if
``auto`` should consider it); add its name to ``ForecastModel`` in ``api/clinicalslo.py`` and run
``make crds``; give it a ``tests/unit/test_forecast_<name>.py``. The shared tests in
``test_forecast_choice.py`` run every registered model through the edge cases.
"""
