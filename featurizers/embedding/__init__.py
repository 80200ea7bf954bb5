"""Face embedding: named featurizers (spec, registry), safe checkpoint loading, fine-tuned folders, the network run."""
