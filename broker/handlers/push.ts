import type { HandlerTable } from './handler.js';
import type { Services } from './services.js';

type PushApi = 'Subscribe' | 'Credit' | 'Settle' | 'Unsubscribe' | 'ListSubscriptions' | 'DescribeSubscription' | 'DeleteSubscription';

/** Push subscriptions: the PushService decides; these handlers only bind it to the session. */
export function pushHandlers(s: Services): Pick<HandlerTable, PushApi> {
  return {
    Subscribe: (req, ctx) => s.push.subscribe(req, ctx.session, ctx.signal),
    Credit: (req, ctx) => ({ credit: s.push.grant(ctx.session, req.consumerId, req.credit) }),
    Settle: (req, ctx) => s.push.settle(ctx.session, req),
    Unsubscribe(req, ctx) {
      s.push.unsubscribe(ctx.session, req.consumerId, req.release);
      return {};
    },
    ListSubscriptions: () => ({ subscriptions: s.push.list() }),
    DescribeSubscription: (req) => s.push.describe(req.subscription, s.now()),
    DeleteSubscription(req) {
      s.push.delete(req.subscription);
      return { subscription: req.subscription };
    },
  };
}
