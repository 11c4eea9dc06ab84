//! Filter parsing (delegated to `scim_v2`) and evaluation against a resource.
