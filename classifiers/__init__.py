"""Train, evaluate and store classifiers on clip descriptor tables."""
