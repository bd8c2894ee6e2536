/**
 * A map and a set for what comes and goes once per client connection (sessions, their cancel keys,
 * their end handlers), kept in dictionary-mode objects rather than `Map` and `Set`.
 *
 * Why: V8 grows, shrinks and compacts a `Map` or `Set` by copying it into a new table and linking the
 * old table to the new one (so that live iterators can follow), and the old table keeps the entries it
 * had. Once one of those tables is in the old generation, which a full collection that found it still
 * current puts there, every table after it is reachable from it until the next full collection, and
 * each holds the sessions that were live when it was replaced. So with a connection per transaction
 * every ended session survived its minor collections and was promoted: about 2 KB per connection, 12 to
 * 16 µs of garbage collection each (bench/README.md, Pooling, "What kept them alive"). A dictionary object
 * replaces its storage without such a link, and a deleted entry lets go of its value at once.
 */

/** Keyed by numbers or strings (a number and its decimal string are the same key). */
export class ChurnMap<K extends number | string, V> {
  private readonly entries = Object.create(null) as Record<K, V>;
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(key: K): V | undefined {
    return this.entries[key];
  }

  has(key: K): boolean {
    return key in this.entries;
  }

  set(key: K, value: V): this {
    if (!(key in this.entries)) this.count++;
    this.entries[key] = value;
    return this;
  }

  delete(key: K): boolean {
    if (!(key in this.entries)) return false;
    delete this.entries[key];
    this.count--;
    return true;
  }

  /** A copy: the map may change while the caller goes through it. Integer keys in ascending order. */
  values(): V[] {
    return Object.values(this.entries);
  }
}

/** What a ChurnSet's readers may do. */
export interface ReadonlyChurnSet<T> extends Iterable<T> {
  readonly size: number;
  has(item: T): boolean;
}

/**
 * Items with a unique numeric id, iterated in ascending id order (creation order, for ids from a
 * counter) over a copy, so that items may leave while the caller goes through them.
 */
export class ChurnSet<T extends { readonly id: number }> implements ReadonlyChurnSet<T> {
  private readonly byId = new ChurnMap<number, T>();

  get size(): number {
    return this.byId.size;
  }

  add(item: T): this {
    this.byId.set(item.id, item);
    return this;
  }

  has(item: T): boolean {
    return this.byId.get(item.id) === item;
  }

  delete(item: T): boolean {
    return this.has(item) && this.byId.delete(item.id);
  }

  [Symbol.iterator](): Iterator<T> {
    return this.byId.values()[Symbol.iterator]();
  }
}
