// The methods the gateway routes: the proxy's catch-all and the admin scope's 405/404 catch-all
// take the same list (TRACE and CONNECT are refused before routing, docs/proxying.md#errors).
export const ROUTED_METHODS: readonly string[] = ['DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT']
