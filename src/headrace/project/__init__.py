"""The Python API over a project folder: settings, pipelines, runs and datasets."""
