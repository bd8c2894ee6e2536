import { describe, expect, it } from 'vitest';
import { CancelRegistry } from '../../src/proxy/cancel.js';
import { ChurnMap, ChurnSet } from '../../src/proxy/churn.js';
import { createLogger } from '../../src/observe/logger.js';
import { upstreamTarget } from '../../src/proxy/upstream.js';

describe('ChurnMap', () => {
  it('keeps, finds, replaces and forgets entries by number or string, counting each once', () => {
    const map = new ChurnMap<number | string, string | undefined>();
    map.set(7, 'seven').set('a1b2', 'key').set(7, 'again').set(9, undefined);
    expect(map.size).toBe(3);
    expect(map.get(7)).toBe('again');
    expect(map.has(9)).toBe(true);
    expect(map.get(8)).toBeUndefined();
    expect(map.has('constructor')).toBe(false);
    expect(map.delete(8)).toBe(false);
    expect(map.delete(7)).toBe(true);
    expect(map.delete(7)).toBe(false);
    expect(map.size).toBe(2);
    expect(map.values()).toEqual([undefined, 'key']);
  });
});

describe('ChurnSet', () => {
  it('holds items by id, in id order, and lets them leave while it is gone through', () => {
    const set = new ChurnSet<{ id: number; name: string }>();
    const [one, two, three] = [1, 2, 3].map((id) => ({ id, name: `s${id}` }));
    set.add(three!).add(one!).add(two!).add(one!);
    expect(set.size).toBe(3);
    const seen: string[] = [];
    for (const item of set) {
      seen.push(item.name);
      set.delete(item);
    }
    expect(seen).toEqual(['s1', 's2', 's3']);
    expect(set.size).toBe(0);
  });

  it('does not take another item with the same id for its own', () => {
    const set = new ChurnSet<{ id: number }>();
    const item = { id: 4 };
    set.add(item);
    expect(set.has({ id: 4 })).toBe(false);
    expect(set.delete({ id: 4 })).toBe(false);
    expect(set.has(item)).toBe(true);
  });
});

describe('CancelRegistry', () => {
  const registry = () => new CancelRegistry(upstreamTarget('postgres://127.0.0.1:1/none', 1000), createLogger({ level: 'silent' }));
  /** An upstream key source that records that the registry chose its session, and sends nothing. */
  const chosen = (log: string[], name: string) => () => {
    log.push(name);
    return undefined;
  };

  it('tells apart keys that end in the same four bytes', async () => {
    const cancels = registry();
    const log: string[] = [];
    const a = Buffer.from('0000000111223344', 'hex');
    const b = Buffer.from('0000000211223344', 'hex');
    cancels.add(a, { name: 'a' }, chosen(log, 'a'));
    const ownerB = { name: 'b' };
    cancels.add(b, ownerB, chosen(log, 'b'));
    expect(cancels.size).toBe(2);
    await cancels.cancel(Buffer.from(b), 'test');
    await cancels.cancel(Buffer.from(a), 'test');
    await cancels.cancel(Buffer.from('0000000311223344', 'hex'), 'test');
    expect(log).toEqual(['b', 'a']);
    cancels.remove(b, ownerB);
    await cancels.cancel(Buffer.from(b), 'test');
    await cancels.cancel(Buffer.from(a), 'test');
    expect(log).toEqual(['b', 'a', 'a']);
    expect(cancels.size).toBe(1);
  });

  it('gives a key registered again to its new owner, whom the old owner cannot remove', async () => {
    const cancels = registry();
    const log: string[] = [];
    const key = Buffer.from('00000abc99887766', 'hex');
    const first = { name: 'first' };
    const second = { name: 'second' };
    cancels.add(key, first, chosen(log, 'first'));
    cancels.add(Buffer.from(key), second, chosen(log, 'second'));
    cancels.remove(key, first);
    expect(cancels.size).toBe(1);
    await cancels.cancel(key, 'test');
    expect(log).toEqual(['second']);
    cancels.remove(key, second);
    expect(cancels.size).toBe(0);
  });
});
