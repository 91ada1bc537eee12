'use strict';
// The Node peer: the `wechat-api` package from npm (bench/package.json), used as its README shows,
// pointed at the emulator through its `endpoint` property (lib/api_common.js builds every URL from
// it). Measured from inside the process, like the wxmedia contender. Prints seconds.
//
//   peer_node.js loop BASE_URL TYPE PATH N [keepalive]   N sequential uploads after a warm-up one
//   peer_node.js upload BASE_URL TYPE PATH               one upload, token fetched first
//   peer_node.js get BASE_URL MEDIA_ID OUT               one get (the package answers a Buffer)
//
// By default wechat-api's HTTP client (urllib) opens a new connection per call; `keepalive` gives
// it a keep-alive agent through setOpts, the best a user can do.
const http = require('http');
const fs = require('fs');
const WechatAPI = require('wechat-api');

const APPID = 'wx1234567890abcdef';
const SECRET = '0123456789abcdef0123456789abcdef';

const [mode, baseUrl, ...rest] = process.argv.slice(2);

function fail(err) {
  // the package's errors may carry the URL: keep tokens and the secret out of the output
  const text = String(err && err.message || err).replace(/(access_token|secret)=[^&\s"']+/g, '$1=…');
  process.stderr.write('peer_node: ' + text + '\n');
  process.exit(1);
}

function makeApi(keepalive) {
  const api = new WechatAPI(APPID, SECRET);
  api.endpoint = baseUrl;
  if (keepalive) api.setOpts({ agent: new http.Agent({ keepAlive: true, maxSockets: 1 }) });
  return api;
}

function upload(api, type, path) {
  return new Promise((resolve, reject) => {
    api.uploadMedia(path, type, (err, data) => {
      if (err) return reject(err);
      if (!data || !data.media_id) return reject(new Error('no media_id: ' + JSON.stringify(data)));
      resolve(data);
    });
  });
}

function token(api) {
  return new Promise((resolve, reject) => {
    api.getLatestToken((err, tok) => (err ? reject(err) : resolve(tok)));
  });
}

function getMedia(api, mediaId) {
  return new Promise((resolve, reject) => {
    api.getMedia(mediaId, (err, data) => {
      if (err) return reject(err);
      if (!Buffer.isBuffer(data)) return reject(new Error('not a file: ' + JSON.stringify(data)));
      resolve(data);
    });
  });
}

function seconds(t0) {
  return (Number(process.hrtime.bigint() - t0) / 1e9).toFixed(6);
}

async function main() {
  if (mode === 'loop') {
    const [type, path, n, keepalive] = rest;
    const api = makeApi(keepalive === 'keepalive');
    await upload(api, type, path);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < Number(n); i++) await upload(api, type, path);
    console.log(seconds(t0));
  } else if (mode === 'upload') {
    const [type, path] = rest;
    const api = makeApi(false);
    await token(api);
    const t0 = process.hrtime.bigint();
    await upload(api, type, path);
    console.log(seconds(t0));
  } else if (mode === 'get') {
    const [mediaId, out] = rest;
    const api = makeApi(false);
    await token(api);
    const t0 = process.hrtime.bigint();
    const data = await getMedia(api, mediaId);
    fs.writeFileSync(out, data);
    console.log(seconds(t0));
  } else {
    process.stderr.write('usage: peer_node.js loop|upload|get BASE_URL ...\n');
    process.exit(2);
  }
}

main().catch(fail);
