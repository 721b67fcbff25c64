// A bounded ring of samples: the newest `capacity`, oldest first.

/** The newest `capacity` values pushed, oldest first. */
export class SampleRing<T> {
  readonly #items: (T | undefined)[];
  #start = 0;
  #length = 0;

  /** @param capacity How many values it keeps; at least 1. */
  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(
        `Cannot make a sample ring: capacity must be a positive integer, not ${capacity}`,
      );
    }
    this.#items = new Array(capacity);
  }

  /** How many values it holds. */
  get length(): number {
    return this.#length;
  }

  /** Adds `value`, dropping the oldest when full. */
  push(value: T): void {
    const capacity = this.#items.length;
    if (this.#length < capacity) {
      this.#items[(this.#start + this.#length++) % capacity] = value;
    } else {
      this.#items[this.#start] = value;
      this.#start = (this.#start + 1) % capacity;
    }
  }

  /**
   * The value at `index`, oldest first; a negative index counts from the
   * newest (-1).
   */
  at(index: number): T | undefined {
    const i = index < 0 ? this.#length + index : index;
    if (i < 0 || i >= this.#length) return undefined;
    return this.#items[(this.#start + i) % this.#items.length];
  }

  /** Every value, oldest first. */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.#length; i++) out.push(this.at(i)!);
    return out;
  }
}
