"""Example rules shipped with cti: `cti rule examples` lists them, `cti rule new NAME --from
EXAMPLE` copies one into the catalog. Each file is a complete rule, documented at its top."""
