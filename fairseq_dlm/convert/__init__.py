"""Converters that turn other pretrained encoders into standard XLM-R masked-LM directories."""
