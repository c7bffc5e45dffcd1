import type { PushConsumerOptions } from '../push-consumer.js';
import { SluiceError } from '../protocol/errors.js';
import type { SubscriptionConfigInput } from '../protocol/messages/push.js';

export interface PushConsumerConfig {
  readonly topic: string;
  readonly subscription: string;
  readonly prefetch: number;
  /** Free window slots that trigger a Credit request: ceil(refillThreshold * prefetch), at least 1. */
  readonly refillAt: number;
  readonly create: SubscriptionConfigInput | undefined;
}

export function parsePushConsumerOptions(o: PushConsumerOptions): PushConsumerConfig {
  const bad = (name: string, what: string, got: unknown): never => {
    throw new SluiceError('INVALID_CONFIG', `push consumer option ${name} must be ${what}, got ${JSON.stringify(got)}`, { details: { option: name } });
  };
  if (typeof o !== 'object' || o === null) bad('options', 'an object', o);
  if (typeof o.topic !== 'string' || o.topic === '') bad('topic', 'a topic name', o.topic);
  if (typeof o.subscription !== 'string' || o.subscription === '') bad('subscription', 'a subscription name', o.subscription);
  const prefetch = o.prefetch ?? 100;
  if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 100_000) bad('prefetch', 'an integer in [1, 100000]', prefetch);
  const threshold = o.refillThreshold ?? 0.5;
  if (typeof threshold !== 'number' || !(threshold > 0 && threshold <= 1)) bad('refillThreshold', 'a number in (0, 1]', threshold);
  if (o.create !== undefined && (typeof o.create !== 'object' || o.create === null)) bad('create', 'an object', o.create);
  return Object.freeze({
    topic: o.topic,
    subscription: o.subscription,
    prefetch,
    refillAt: Math.max(1, Math.ceil(threshold * prefetch)),
    create: o.create === undefined ? undefined : { ...o.create },
  });
}
