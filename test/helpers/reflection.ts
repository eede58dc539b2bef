import * as grpc from '@grpc/grpc-js';

/** The raw ServerReflectionResponse to `list_services` (latin1 text: the service names show as is). */
export async function listServices(address: string): Promise<string> {
  const raw = new grpc.Client(address, grpc.credentials.createInsecure());
  const call = raw.makeBidiStreamRequest(
    '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
    (x: Buffer) => x,
    (b: Buffer) => b,
  );
  try {
    const reply = new Promise<Buffer>((res, rej) => {
      call.once('data', (b: Buffer) => res(b));
      call.once('error', rej);
    });
    call.write(Buffer.from([0x3a, 0x00])); // ServerReflectionRequest{list_services: ""}
    return (await reply).toString('latin1');
  } finally {
    call.end();
    raw.close();
  }
}
