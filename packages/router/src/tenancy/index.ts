export { type ApiKeyLine, ApiKeys, ApiKeysError, bearerToken, parseApiKeyLines, readApiKeysFile, type Tenant } from './api-keys.js';
export { type Admission, type Limits, TenantLimits, TokenBucket } from './rate-limit.js';
export { tenantCacheSalt, tenantRequestId } from './scope.js';
