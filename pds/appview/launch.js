#!/usr/bin/env node
// A whole local Bluesky network for narratives' tests: PLC directory, PDS and the AppView
// (@atproto/bsky, the service that serves threads, quotes and like counts), plus the Ozone
// moderation service dev-env brings along, from @atproto/dev-env's TestNetwork. It needs the
// PostgreSQL server and the Redis server the test fixture starts (DB_POSTGRES_URL, REDIS_HOST).
//
//   DB_POSTGRES_URL=postgres://... REDIS_HOST=127.0.0.1:6379 node launch.js
//
// Every server listens on 127.0.0.1 only (dev-env would listen on all interfaces). Prints one line
// "APPVIEW READY {json}" with the URLs once everything is up, then serves, on the control port:
//   POST /process-all  - returns once the AppView has indexed everything the PDS has sequenced
// SIGTERM or SIGINT closes the network.
'use strict'

const http = require('node:http')
const net = require('node:net')

// Bind every server dev-env starts to the loopback interface.
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, '127.0.0.1')
  } else if (args[0] && typeof args[0] === 'object' && !args[0].host && args[0].port !== undefined) {
    args[0] = { ...args[0], host: '127.0.0.1' }
  }
  return listen.apply(this, args)
}

const { TestNetwork } = require('@atproto/dev-env')

async function main() {
  const network = await TestNetwork.create({
    dbPostgresSchema: process.env.DB_POSTGRES_SCHEMA || 'narratives_test',
  })
  const control = http.createServer(async (req, res) => {
    try {
      if (req.method === 'POST' && req.url === '/process-all') {
        await network.processAll(30000)
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end('{"ok":true}')
      } else {
        res.writeHead(404)
        res.end()
      }
    } catch (err) {
      res.writeHead(500, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: String(err) }))
    }
  })
  await new Promise((resolve) => control.listen(0, '127.0.0.1', resolve))
  const info = {
    pds: network.pds.url.replace('localhost', '127.0.0.1'),
    appview: network.bsky.url.replace('localhost', '127.0.0.1'),
    appviewDid: network.bsky.ctx.cfg.serverDid,
    plc: network.plc.url.replace('localhost', '127.0.0.1'),
    control: `http://127.0.0.1:${control.address().port}`,
  }
  console.log(`APPVIEW READY ${JSON.stringify(info)}`)
  let closing = false
  const stop = async () => {
    if (closing) return
    closing = true
    control.close()
    await network.close()
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main().catch((err) => {
  console.error('APPVIEW FAILED', err)
  process.exit(1)
})
