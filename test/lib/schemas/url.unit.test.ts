// URL rules shared by the environment and the routes file (lib/schemas/url.ts), in process.
import t from 'tap'
import { backendUrl, httpUrl, isHttpUrl } from '../../../lib/schemas/url.js'

t.test('isHttpUrl takes http(s) URLs with a host only', async (t) => {
  for (const u of ['http://a', 'https://a.example:8443/x?y', 'http://127.0.0.1:3001', 'http://[::1]:80']) t.ok(isHttpUrl(u), u)
  for (const u of ['', 'a.example', 'ftp://a', 'file:///etc/passwd', 'http://', 'javascript:alert(1)']) t.notOk(isHttpUrl(u), JSON.stringify(u))
})

t.test('httpUrl trims and refuses what isHttpUrl refuses', async (t) => {
  t.equal(httpUrl().parse('  http://a:1  '), 'http://a:1')
  t.notOk(httpUrl().safeParse('ftp://a').success)
})

t.test('a backend URL is an origin: no path, query, fragment or credentials', async (t) => {
  for (const u of ['http://a:1', 'http://a:1/', 'https://b.example']) t.ok(backendUrl().safeParse(u).success, u)
  for (const u of ['http://a:1/api', 'http://a:1?x=1', 'http://a:1/#f', 'http://u:p@a:1', 'mailto:a@b']) {
    t.notOk(backendUrl().safeParse(u).success, u)
  }
})
