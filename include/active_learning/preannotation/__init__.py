"""Putting the deployed model to work: pre-annotations with a confidence per task, the annotation queue
(least confident first), and their export for Annotation Lab and Label Studio."""
