// Preload for cdk8s-cli (node --require tools/offline-schema.cjs ...).
//
// `cdk8s import k8s@X.Y.Z` gets its schema by calling download() from
// cdk8s-cli/lib/util with a raw.githubusercontent.com URL. GitHub is not
// reachable from our build machines. lib/import/k8s.js looks up
// `util_1.download` on the module's exports each time it calls it, so
// replacing that export here, before the CLI runs, is enough to serve the
// schema from a local file (written by tools/k8s_schema.py).
//
// Only that schema URL is redirected. Every other call goes to the original
// download(). If the environment variable is missing or the file cannot be
// read, the import fails with an error that says why.
'use strict';

const fs = require('fs');
const path = require('path');

// Not prefixed with CDK8S_: the CLI hands CDK8S_* variables to yargs as
// options.
const ENV_VAR = 'OFFLINE_K8S_SCHEMA';
const SCHEMA_URL =
  /^https:\/\/raw\.githubusercontent\.com\/cdk8s-team\/cdk8s\/master\/kubernetes-schemas\/v(\d+\.\d+\.\d+)\/_definitions\.json$/;

// cdk8s-cli's package.json "exports" hides lib/util, so find it through the
// package root. The result is the same absolute file that
// tools/node_modules/.bin/cdk8s loads, so both share one module instance
// and the patched export below is the one the CLI calls.
const cliRoot = path.dirname(require.resolve('cdk8s-cli/package.json'));
const util = require(path.join(cliRoot, 'lib', 'util.js'));
const originalDownload = util.download;

function fail(message) {
  // The CLI adds its own "Could not find a schema" hint when download()
  // throws. Also print the real reason so it cannot get lost.
  console.error(`offline-schema: ${message}`);
  throw new Error(message);
}

util.download = async function offlineDownload(url) {
  const match = SCHEMA_URL.exec(url);
  if (!match) {
    return originalDownload(url);
  }
  const file = process.env[ENV_VAR];
  if (!file) {
    fail(`${url} was requested but ${ENV_VAR} is not set; ` +
      'run tools/import-k8s.sh or point it at a schema made by tools/k8s_schema.py');
  }
  const resolved = path.resolve(file);
  let text;
  try {
    text = fs.readFileSync(resolved, 'utf-8');
  } catch (err) {
    fail(`cannot read ${ENV_VAR}=${resolved}: ${err.message}`);
  }
  console.error(`offline-schema: serving k8s v${match[1]} schema from ${resolved}`);
  return text;
};
