"""SavedModel export for TensorFlow Serving, the files it reads, and a client."""
