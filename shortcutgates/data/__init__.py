"""The data pipeline: column schema, stamp codec, file IO, manifests, LRG identity, splits, the
manifest builder and hard negatives (``docs/design.md``). No torch."""
