#!/usr/bin/env node
// A real Bluesky PDS plus a PLC directory in one Node process, bound to 127.0.0.1, for narratives'
// tests and demos. Plain Node: no build step.
//
//   node launch.js [--port 2583] [--data-dir pds/data] [--plc-port 0]
//
// Environment (arguments win): NARRATIVES_PDS_PORT, NARRATIVES_PDS_DATA, NARRATIVES_PLC_PORT.
// Passed through to the PDS: PDS_BLOB_UPLOAD_LIMIT (default here 100 MB, for video),
// PDS_RATE_LIMITS_ENABLED (default off), LOG_ENABLED (the PDS's own request log, to stdout).
//
// The PLC directory keeps its operations in memory (`Database.mock()`); each accepted operation is
// appended to <data>/plc-operations.jsonl and replayed at boot, so a restart on the same data
// directory keeps every did:plc identity. The rotation key and the secrets are generated on first
// boot and kept in <data>/secrets.json (mode 0600). Prints one line starting with "PDS ready" once
// GET /xrpc/_health answers; SIGTERM or SIGINT stops it cleanly.
'use strict'

const crypto = require('node:crypto')
const fs = require('node:fs')
const http = require('node:http')
const path = require('node:path')

const HOST = '127.0.0.1'

function parseArgs(argv) {
  const out = {}
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg)
    if (!match) throw new Error(`unexpected argument: ${arg}`)
    const value = match[2] !== undefined ? match[2] : argv[++i]
    if (value === undefined) throw new Error(`missing value for --${match[1]}`)
    out[match[1]] = value
  }
  return out
}

function bindToLoopback(app) {
  // Both servers call `app.listen(port)`, which binds every interface; pin them to loopback.
  const listen = app.listen.bind(app)
  app.listen = (port, ...rest) => listen(port, HOST, ...rest)
}

function loadSecrets(dataDir) {
  const file = path.join(dataDir, 'secrets.json')
  if (fs.existsSync(file)) return JSON.parse(fs.readFileSync(file, 'utf8'))
  const { Secp256k1Keypair } = require('@atproto/crypto')
  return Secp256k1Keypair.create({ exportable: true }).then(async (keypair) => {
    const secrets = {
      jwtSecret: crypto.randomBytes(32).toString('hex'),
      adminPassword: crypto.randomBytes(16).toString('hex'),
      plcRotationKeyHex: Buffer.from(await keypair.export()).toString('hex'),
    }
    fs.writeFileSync(file, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 })
    return secrets
  })
}

async function startPlc(dataDir, port) {
  const { PlcServer, Database } = require('@did-plc/server')
  const db = Database.mock()
  const log = path.join(dataDir, 'plc-operations.jsonl')
  let replayed = 0
  if (fs.existsSync(log)) {
    for (const line of fs.readFileSync(log, 'utf8').split('\n')) {
      if (!line.trim()) continue
      const { did, op } = JSON.parse(line)
      await db.validateAndAddOp(did, op)
      replayed++
    }
  }
  const addOp = db.validateAndAddOp.bind(db)
  db.validateAndAddOp = async (did, op) => {
    await addOp(did, op)
    // Only accepted operations are kept; appendFileSync so a crash right after the answer keeps it.
    fs.appendFileSync(log, JSON.stringify({ did, op }) + '\n')
  }
  const plc = PlcServer.create({ db, port })
  bindToLoopback(plc.app)
  const server = await plc.start()
  return { plc, port: server.address().port, replayed }
}

async function waitForHealth(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise((resolve) => {
      const req = http.get(url, (res) => {
        res.resume()
        resolve(res.statusCode === 200)
      })
      req.on('error', () => resolve(false))
      req.setTimeout(2000, () => req.destroy())
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2))
  const port = Number(args.port || process.env.NARRATIVES_PDS_PORT || 2583)
  const plcPort = Number(args['plc-port'] || process.env.NARRATIVES_PLC_PORT || 0)
  const dataDir = path.resolve(
    args['data-dir'] || process.env.NARRATIVES_PDS_DATA || path.join(__dirname, 'data'),
  )
  fs.mkdirSync(path.join(dataDir, 'blobs'), { recursive: true, mode: 0o700 })

  const secrets = await loadSecrets(dataDir)
  const { plc, port: boundPlcPort, replayed } = await startPlc(dataDir, plcPort)

  const env = {
    PDS_PORT: String(port),
    PDS_HOSTNAME: 'localhost',
    PDS_DATA_DIRECTORY: dataDir,
    PDS_BLOBSTORE_DISK_LOCATION: path.join(dataDir, 'blobs'),
    // The PDS insists on "localhost" here, not an IP; it resolves to 127.0.0.1.
    PDS_DID_PLC_URL: `http://localhost:${boundPlcPort}`,
    PDS_JWT_SECRET: secrets.jwtSecret,
    PDS_ADMIN_PASSWORD: secrets.adminPassword,
    PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: secrets.plcRotationKeyHex,
    PDS_SERVICE_HANDLE_DOMAINS: '.test',
    PDS_INVITE_REQUIRED: 'false',
    PDS_DEV_MODE: 'true',
    PDS_CRAWLERS: '',
    PDS_BLOB_UPLOAD_LIMIT: process.env.PDS_BLOB_UPLOAD_LIMIT || String(100 * 1024 * 1024),
    PDS_RATE_LIMITS_ENABLED: process.env.PDS_RATE_LIMITS_ENABLED || 'false',
  }
  Object.assign(process.env, env)

  const { PDS, envToCfg, envToSecrets, readEnv } = require('@atproto/pds')
  const pdsEnv = readEnv()
  const pds = await PDS.create(envToCfg(pdsEnv), envToSecrets(pdsEnv))
  bindToLoopback(pds.app)
  await pds.start()

  let stopping = false
  const stop = async (signal) => {
    if (stopping) return
    stopping = true
    try {
      await pds.destroy()
      await plc.destroy()
    } finally {
      console.log(`PDS stopped (${signal})`)
      process.exit(0)
    }
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))

  const url = `http://${HOST}:${port}`
  await waitForHealth(`${url}/xrpc/_health`, 60000)
  console.log(
    `PDS ready ${url} plc=http://localhost:${boundPlcPort} data=${dataDir} ` +
      `plc_ops_replayed=${replayed} rate_limits=${env.PDS_RATE_LIMITS_ENABLED} ` +
      `blob_limit=${env.PDS_BLOB_UPLOAD_LIMIT}`,
  )
}

main().catch((err) => {
  console.error('PDS failed to start:', err)
  process.exit(1)
})
