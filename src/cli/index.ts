// The `api-gateway` command's process (bin/api-gateway.js imports this once it has checked the
// Node.js version): runs the command line and exits with its status (docs/cli.md).
import { runCli } from './main.js'

const code = await runCli(process.argv.slice(2))
// Exit at once: the admin client's keep-alive sockets would hold the process a few seconds more.
// On Linux, writes to pipes and files are synchronous, so nothing printed is lost.
if (code !== null) process.exit(code)
