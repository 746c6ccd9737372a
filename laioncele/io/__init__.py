"""Storage every stage shares: versioned Arrow schemas (``schema``), sharded Arrow files with manifests, atomic
writes and unit-level resume (``shards``), and local-or-``s3://`` paths (``storage``).

Public names: ``schema.conform``, ``schema.schema_id``; ``shards.write_shards``, ``read_shards``, ``read_shard``,
``iter_shards``, ``load_manifest``, ``write_unit``, ``completed_units``, ``finalize_stage``, ``ShardWriter``,
``atomic_write_json``; ``storage.as_path``, ``open_input``, ``open_output``, ``configure``, ``ObjectPath``.
"""
