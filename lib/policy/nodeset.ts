/**
 * Sets of nodes as bitsets over dense slots. The engine gives every node a slot; a set of
 * 10,000 nodes is 313 words, so unions of rule member sets stay cheap at tailnet scale.
 */

export class Bitset {
  words: Uint32Array;

  constructor(capacityBits = 0) {
    this.words = new Uint32Array(Math.max(1, Math.ceil(capacityBits / 32)));
  }

  private ensure(bit: number): void {
    const need = (bit >>> 5) + 1;
    if (need <= this.words.length) return;
    const next = new Uint32Array(Math.max(need, this.words.length * 2));
    next.set(this.words);
    this.words = next;
  }

  add(bit: number): void {
    this.ensure(bit);
    this.words[bit >>> 5] |= 1 << (bit & 31);
  }

  delete(bit: number): void {
    if ((bit >>> 5) < this.words.length) this.words[bit >>> 5] &= ~(1 << (bit & 31));
  }

  has(bit: number): boolean {
    const w = bit >>> 5;
    return w < this.words.length && (this.words[w] & (1 << (bit & 31))) !== 0;
  }

  orWith(other: Bitset): void {
    if (other.words.length > this.words.length) this.ensure(other.words.length * 32 - 1);
    const a = this.words, b = other.words;
    for (let i = 0; i < b.length; i++) a[i] |= b[i];
  }

  /** True when the two sets share a member. */
  intersects(other: Bitset): boolean {
    const a = this.words, b = other.words;
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) if ((a[i] & b[i]) !== 0) return true;
    return false;
  }

  isEmpty(): boolean {
    for (let i = 0; i < this.words.length; i++) if (this.words[i] !== 0) return false;
    return true;
  }

  clone(): Bitset {
    const b = new Bitset(0);
    b.words = this.words.slice();
    return b;
  }

  count(): number {
    let n = 0;
    for (let i = 0; i < this.words.length; i++) {
      let v = this.words[i];
      v = v - ((v >>> 1) & 0x55555555);
      v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
      n += (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
    }
    return n;
  }

  *bits(): IterableIterator<number> {
    const w = this.words;
    for (let i = 0; i < w.length; i++) {
      let v = w[i];
      while (v !== 0) {
        const low = v & -v;
        yield i * 32 + (31 - Math.clz32(low));
        v ^= low;
      }
    }
  }
}

/**
 * A read-only view of a set of node ids backed by a bitset of slots: has/size/iteration
 * without materialising a Set for every node of a 10,000-node tailnet.
 */
export class NodeIdSet implements Iterable<number> {
  private cachedSize = -1;

  /** `exclude` is a slot left out of the set (a node is never its own peer). */
  constructor(
    private readonly slots: Bitset,
    private readonly slotToId: readonly number[],
    private readonly idToSlot: ReadonlyMap<number, number>,
    private readonly exclude = -1,
  ) {}

  has(id: number): boolean {
    const s = this.idToSlot.get(id);
    return s !== undefined && s !== this.exclude && this.slots.has(s);
  }

  get size(): number {
    if (this.cachedSize < 0) {
      this.cachedSize = this.slots.count() -
        (this.exclude >= 0 && this.slots.has(this.exclude) ? 1 : 0);
    }
    return this.cachedSize;
  }

  *[Symbol.iterator](): IterableIterator<number> {
    for (const s of this.slots.bits()) if (s !== this.exclude) yield this.slotToId[s];
  }

  forEach(fn: (id: number) => void): void {
    for (const id of this) fn(id);
  }

  toSet(): Set<number> {
    return new Set(this);
  }

  toSortedArray(): number[] {
    return [...this].sort((a, b) => a - b);
  }
}
