"""Training a spaCy NER model from a project's completions: data, training, scoring, the training steps."""
