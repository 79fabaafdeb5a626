import { pino, type Logger } from 'pino';

export function createLogger(level: string, format: 'json' | 'pretty'): Logger {
  if (format === 'pretty') {
    return pino({ level, transport: { target: 'pino-pretty', options: { colorize: process.stdout.isTTY, translateTime: 'HH:MM:ss.l' } } });
  }
  return pino({ level });
}
