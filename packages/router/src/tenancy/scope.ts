/**
 * What a tenant's request looks like past the router. Its cache salt starts with the tenant, so
 * no two tenants' blocks ever hash alike (their prompts share no cached prefix, and
 * `cached_tokens` says nothing about another tenant's prompts); the request's own `cache_salt`
 * refines it within the tenant. Its request id is prefixed with the tenant, so ids chosen by
 * different tenants never collide on a worker. The anonymous tenant ('': authentication off) is
 * passed through unchanged.
 */
export function tenantCacheSalt(tenant: string, cacheSalt: string): string {
  return tenant === '' ? cacheSalt : `tenant:${tenant}\u0000${cacheSalt}`;
}

export function tenantRequestId(tenant: string, requestId: string): string {
  return tenant === '' ? requestId : `${tenant}/${requestId}`;
}
