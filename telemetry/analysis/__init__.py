"""Analysis of the stored history: statistics, trends, predictions and recommendations.

Pure functions over rows where possible (`stats`, `trends`, `predict`, `rules`, `timeline`, `queue`); `queries`
is the only module that reads the store for analysis, `recommendations` the only one that writes recommendations,
and `service.AnalysisService` assembles them for the recorder thread and the REST routes. ComfyUI is never
imported here.
"""
