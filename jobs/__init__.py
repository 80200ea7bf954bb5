"""Command lines that wire featurizers, pipelines and classifiers together."""
