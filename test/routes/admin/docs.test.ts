// GET /admin/docs (routes/admin/docs.ts): Swagger UI over the admin OpenAPI document, behind the
// admin's Basic auth, only on the admin listener when ADMIN_PORT is set, and loaded in a real
// headless browser (Debian's chromium through playwright-core) that must show every operation.
import { chromium } from 'playwright-core'
import t from 'tap'
import { build } from '../../support/app.js'
import { ADMIN_PASSWORD, ADMIN_USER, adminAuth } from '../../support/gateway-process.js'
import { http } from '../../support/http.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const auth = { authorization: adminAuth() }

interface Doc { paths: Record<string, Record<string, { operationId: string }>> }

const app = await build(t, { ADMIN_PASSWORD, ADMIN_PORT: '0' })
const pub = Number(new URL(await app.listen({ host: '127.0.0.1', port: 0 })).port)
const adminUrl = await app.adminListener?.listen() as string
const adm = Number(new URL(adminUrl).port)

t.test('the page is on the admin listener only, behind Basic auth, with its assets', async (t) => {
  for (const headers of [auth, {}]) {
    t.equal((await http(pub, '/admin/docs', { headers })).status, 404, 'the public listener does not serve it')
  }
  const anonymous = await http(adm, '/admin/docs')
  t.equal(anonymous.status, 401)
  t.match(anonymous.headers['www-authenticate'], /^Basic /)
  t.equal((await http(adm, '/admin/docs', { headers: { authorization: adminAuth(ADMIN_USER, 'wrong') } })).status, 401)
  t.equal((await http(adm, '/admin/docs/static/swagger-ui-bundle.js')).status, 401, 'the assets need the credentials too')

  const page = await http(adm, '/admin/docs', { headers: auth })
  t.equal(page.status, 200)
  t.match(page.headers['content-type'], /^text\/html/)
  t.match(page.body, /<title>API gateway admin API<\/title>/)
  t.match(page.body, 'src="/admin/docs/static/swagger-ui-bundle.js"', 'assets from this gateway, not a CDN')
  const csp = String(page.headers['content-security-policy'])
  t.match(csp, /default-src 'self'/)
  t.notMatch(csp, /upgrade-insecure-requests/, 'a plain-HTTP admin listener keeps its assets on HTTP')
  const bundle = await http(adm, '/admin/docs/static/swagger-ui-bundle.js', { headers: auth })
  t.equal(bundle.status, 200)
  t.match(bundle.headers['content-type'], /javascript/)
})

t.test('the page\'s routes are not operations of the document', async (t) => {
  const doc = (await http(adm, '/admin/openapi.json', { headers: auth })).json() as Doc
  t.notOk(Object.keys(doc.paths).some((p) => p.startsWith('/admin/docs')), Object.keys(doc.paths).join(' '))
})

t.test('in a headless browser the page shows every operation of the OpenAPI document', async (t) => {
  const doc = (await http(adm, '/admin/openapi.json', { headers: auth })).json() as Doc
  const expected = Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.entries(ops).map(([method, op]) => `${method.toUpperCase()} ${path} ${op.operationId}`)).sort()
  t.ok(expected.length > 10, `${expected.length} operations in the document`)

  const browser = await chromium.launch({ executablePath: CHROMIUM })
  t.teardown(() => browser.close())
  const context = await browser.newContext({ httpCredentials: { username: ADMIN_USER, password: ADMIN_PASSWORD } })
  const page = await context.newPage()
  const problems: string[] = []
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console: ${msg.text()}`) })
  page.on('requestfailed', (req) => problems.push(`request failed: ${req.url()}`))

  const res = await page.goto(`${adminUrl}/admin/docs`)
  t.equal(res?.status(), 200)
  // Swagger UI renders the operations after fetching the document: wait for as many as it has.
  await page.locator('.opblock').nth(expected.length - 1).waitFor()
  const shown = await page.$$eval('.opblock', (blocks) => blocks.map((b) => [
    b.querySelector('.opblock-summary-method')?.textContent ?? '',
    b.querySelector('.opblock-summary-path')?.getAttribute('data-path') ?? '',
    b.querySelector('.opblock-summary-operation-id')?.textContent ?? ''
  ].join(' ')))
  t.same(shown.sort(), expected, 'each method, path and operationId is on the page')
  t.match(await page.locator('.info .title').textContent(), /API gateway admin API/)
  t.same(problems, [], 'no script error, failed request or CSP violation')
})

t.test('without ADMIN_PORT the page is on the one listener, still behind Basic auth', async (t) => {
  const single = await build(t, { ADMIN_PASSWORD })
  t.equal((await single.inject({ url: '/admin/docs' })).statusCode, 401)
  const page = await single.inject({ url: '/admin/docs', headers: auth })
  t.equal(page.statusCode, 200)
  t.match(page.body, 'src="/admin/docs/static/swagger-initializer.js"')
  t.equal((await single.inject({ url: '/admin/docs/', headers: auth })).statusCode, 404, 'admin paths are exact: no trailing slash')
  const spec = await single.inject({ url: '/admin/docs/json', headers: auth })
  t.equal(spec.statusCode, 200, 'the document the page loads')
  t.same(spec.json(), (await single.inject({ url: '/admin/openapi.json', headers: auth })).json(), 'is /admin/openapi.json')
})
