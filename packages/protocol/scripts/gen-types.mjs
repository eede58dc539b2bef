// Generates src/generated/ (TypeScript types of every proto message and service) from proto/ with
// @grpc/proto-loader's own generator, using the loader options of src/grpc.ts. The generator
// writes extensionless relative imports; this package is ESM (NodeNext), so they get `.js`.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'src', 'generated');
const require = createRequire(import.meta.url);
const bin = join(dirname(require.resolve('@grpc/proto-loader/package.json')), 'build', 'bin', 'proto-loader-gen-types.js');

rmSync(out, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [
    bin,
    '--longs=Number',
    '--enums=String',
    '--oneofs',
    '--includeComments',
    '--grpcLib=@grpc/grpc-js',
    '-I',
    join(root, 'proto'),
    '-O',
    out,
    'kcache/v1/generate.proto',
    'kcache/v1/worker.proto',
  ],
  { stdio: 'inherit' },
);

const walk = (dir) => readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? walk(join(dir, f)) : [join(dir, f)]));
for (const file of walk(out)) {
  const src = readFileSync(file, 'utf8');
  writeFileSync(file, src.replace(/from '(\.{1,2}\/[^']+)'/g, "from '$1.js'"));
}
