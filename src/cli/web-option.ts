// `--web HOST:PORT` for the commands that run a guest (see src/web/).
import { InvalidArgumentError } from 'commander';
import { parseListenAddress, type ListenAddress } from '../web/listen-address';

export const WEB_OPTION_HELP = 'also serve the console and vCPU status as a web page on HOST:PORT (port 0: any free port)';

/** commander parser for --web: a clear message on a bad value. */
export function webOption(value: string): ListenAddress {
  try {
    return parseListenAddress(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}
