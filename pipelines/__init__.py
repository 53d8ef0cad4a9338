"""tf.data input: ImageNet TFRecords, tfds, the TFRecord builder and the built-in set."""
