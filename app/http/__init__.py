"""HTTP plumbing shared by the domain routers: services container, time parsing, errors."""
