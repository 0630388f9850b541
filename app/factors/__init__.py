"""User-defined factor sets over HTTP: JSON codec, store-backed lookup and `/api/v1/factor-sets`."""
