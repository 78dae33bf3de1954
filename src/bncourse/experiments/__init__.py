"""Experiment scripts whose results chapters plot from recorded JSON files (see ``bn_training``)."""
