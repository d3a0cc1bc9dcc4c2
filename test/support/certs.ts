/**
 * Test certificates made with openssl at run time (EC P-256, valid 2 days): a CA, and
 * leaf certificates signed by it. Files are written into `dir` as NAME.key / NAME.pem.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const haveOpenssl = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;

/** Extensions of a certificate usable by a node as both server and client on 127.0.0.1. */
export const NODE_EXT = 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n';

/** A node's peer certificate extensions: NODE_EXT, naming the node id as a DNS SAN too. */
export function peerExt(id: string): string {
  return `subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:${id}\nextendedKeyUsage=serverAuth,clientAuth\n`;
}

/** An ordinary client certificate: clientAuth only. */
export const CLIENT_EXT = 'extendedKeyUsage=clientAuth\n';

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
}

function makeKey(dir: string, name: string): void {
  openssl(dir, 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', `${name}.key`);
}

/** A self-signed CA: NAME.key, NAME.pem. */
export function makeCa(dir: string, name: string, cn = `raftkv ${name}`): void {
  makeKey(dir, name);
  openssl(
    dir,
    'req',
    '-x509',
    '-new',
    '-key',
    `${name}.key`,
    '-subj',
    `/CN=${cn}`,
    '-days',
    '2',
    '-out',
    `${name}.pem`,
  );
}

/** A certificate for NAME signed by the CA `ca`, with the given extensions. */
export function makeLeaf(dir: string, name: string, ca: string, ext: string, cn = name): void {
  makeKey(dir, name);
  openssl(dir, 'req', '-new', '-key', `${name}.key`, '-subj', `/CN=${cn}`, '-out', `${name}.csr`);
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(
    dir,
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.pem`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    `${name}.ext`,
    '-out',
    `${name}.pem`,
  );
}
