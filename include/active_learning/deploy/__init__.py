"""Deploying a trained model: the deploy gate, the labeling-config rewrite, validation and rollback."""
