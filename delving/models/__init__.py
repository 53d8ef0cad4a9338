"""The paper's networks: tables as data (`specs`), the Keras models built from
them (`networks`), the network a `TrainConfig` describes (`from_config`), and
per-layer costs (`stats`)."""
