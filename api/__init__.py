"""HTTP API: data plane (/v1), admin plane (/admin/v1), health, error model."""
