#!/usr/bin/env python3
"""Generate benchctl's bundled ShareGPT-format sample (datasets/sharegpt_sample.json).

Stdlib only and fully deterministic: every random choice goes through one `random.Random(SEED)`,
and nothing iterates over a set or depends on hash order, so the same seed always yields a
byte-identical file.

The text is assembled from hand-written building blocks (topic banks, code snippets, fact lists,
recipes, itineraries, translations, ...) plus a few generators that compute their own answers
(math problems, CSV/JSON conversions, proofreading of deliberately corrupted paragraphs). About 35%
of the conversations are multi-turn, with follow-up questions that refer back to earlier turns.

A few deliberate edge-case entries are appended at the end (see EDGE_CASES and datasets/README.md).

    python datasets/make_sharegpt_sample.py                  # writes datasets/sharegpt_sample.json
    python datasets/make_sharegpt_sample.py --tiny           # writes datasets/tiny_sharegpt.json
"""

from __future__ import annotations

import argparse
import json
import random
import string
import textwrap
from pathlib import Path

SEED = 20250607
N_REGULAR = 395          # regular conversations; the edge cases below are added on top
MULTI_TURN_FRACTION = 0.35
TINY_SEED = 7
N_TINY = 12

HERE = Path(__file__).resolve().parent


def D(s: str) -> str:
    """Dedent a triple-quoted block and strip the surrounding blank lines."""
    return textwrap.dedent(s).strip("\n")


def pick(rng: random.Random, seq):
    return seq[rng.randrange(len(seq))]


def sample(rng: random.Random, seq, k):
    k = max(0, min(k, len(seq)))
    return rng.sample(list(seq), k)


def bullets(items, style="-"):
    if style == "1.":
        return "\n".join(f"{i}. {x}" for i, x in enumerate(items, 1))
    return "\n".join(f"{style} {x}" for x in items)


def maybe(rng, p, text, default=""):
    return text if rng.random() < p else default


# --------------------------------------------------------------------------------------------
# Shared small banks
# --------------------------------------------------------------------------------------------

FIRST_NAMES = ["Alice", "Ben", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hiro", "Isabel", "Jamal",
               "Kenji", "Laura", "Mateo", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Samir", "Tara",
               "Umar", "Valentina", "Wei", "Ximena", "Yusuf", "Zoe", "Lukas", "Amélie", "Søren", "Mei"]
LAST_NAMES = ["Anderson", "Brown", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Hoffmann", "Ito",
              "Johnson", "Kowalski", "Lopez", "Müller", "Nguyen", "Okafor", "Patel", "Rossi", "Schmidt",
              "Tanaka", "Williams", "Yamamoto", "Zhang", "Moreau", "Silva"]
CITIES = ["Lisbon", "Toronto", "Osaka", "Nairobi", "Berlin", "Austin", "Melbourne", "Lyon", "Seoul",
          "Denver", "Porto", "Kraków", "Bogotá", "Edinburgh", "Taipei", "Cape Town"]
JOBS = ["data analyst", "nurse", "backend engineer", "teacher", "product manager", "graphic designer",
        "accountant", "electrician", "UX researcher", "chef", "civil engineer", "pharmacist"]

# Openers people put in front of a request; they give prompts realistic context and length spread.
PREAMBLES = [
    "",
    "",
    "",
    "Quick question. ",
    "Hi! ",
    "Hey, hope you can help. ",
    "I'm a bit stuck on something. ",
    "I've been going back and forth on this for a while. ",
    "My manager asked me to look into this and I'm not sure where to start. ",
    "I'm preparing for an exam next week and want to make sure I really understand this. ",
    "Sorry if this is a basic question, I'm pretty new to this. ",
    "Context: I'm working on a side project on weekends and trying to learn as I go. ",
    "I asked a friend about this but their explanation didn't really click for me. ",
    "I'm writing a blog post for beginners and want to get the details right. ",
    "For a team presentation on Friday I need a clear explanation that non-experts can follow. ",
]

CLOSERS = [
    "", "", "", "",
    " Thanks!",
    " Thanks in advance.",
    " Please keep it concise.",
    " Please explain step by step.",
    " Use simple language if possible.",
    " A short answer is fine.",
    " Feel free to go into detail.",
]

THANKS_HUMAN = ["Thanks, that's really helpful!", "Perfect, thank you.", "Great, that makes sense now.",
                "Awesome, thanks a lot!", "ok thanks", "That clears it up, thank you!",
                "Thank you so much, this saved me a lot of time."]
THANKS_GPT = ["You're welcome! Let me know if anything else comes up.",
              "Glad it helped! Feel free to ask if you have more questions.",
              "You're welcome. Good luck with it!",
              "Happy to help. If you run into any issues, just share the details and we can work through them.",
              "No problem at all! If you want, I can go deeper into any of the points above."]


def dress_prompt(rng, core: str, preamble_p=0.55, closer_p=0.4) -> str:
    pre = pick(rng, PREAMBLES) if rng.random() < preamble_p else ""
    post = pick(rng, CLOSERS) if rng.random() < closer_p else ""
    return f"{pre}{core}{post}".strip()


# Situational context people give before the actual request (category -> sentences). 1-3 are chosen
# and placed before the question, which is what makes real prompts long-tailed.
CONTEXTS = {
    "science": [
        "I'm a high school teacher preparing a lesson for fifteen-year-olds, and they've already covered basic cells and chemistry.",
        "We watched a documentary last night and my partner and I ended up arguing about the details.",
        "I'm studying for a first-year university exam and the textbook explanation is very dense.",
        "My eight-year-old keeps asking me questions I can't answer, and this was today's.",
        "I'm an adult learner who never took science seriously at school, so please don't assume much background.",
        "I read a popular-science article about this on the train and came away more confused than before.",
        "I'd like to understand the actual mechanism, not just a one-line definition.",
        "If there are common misconceptions about this, please point them out.",
        "I'm going to turn the explanation into a short presentation for my study group, so structure would help.",
    ],
    "history": [
        "I'm writing a 2,000-word essay for a university course and my professor wants us to focus on causes rather than just listing events.",
        "I'm visiting a museum exhibition about this next weekend and want some background first.",
        "My history teacher said the textbook version is oversimplified, which made me curious.",
        "I'm a history podcast listener but I've never had it explained from the beginning.",
        "Please include the key dates and people, but I care most about why it happened.",
        "I'd like a balanced view, including what historians disagree about.",
        "We're doing a family quiz night and this is my topic.",
    ],
    "advice": [
        "I'm {age}, I work as a {job} in {city}, and most days I'm at my desk from nine until six or later.",
        "I've read a lot of generic lists online but they all say the same things.",
        "I share a flat with two roommates, which doesn't always make things easier.",
        "I tried to fix this myself last year, it worked for about a month and then I slipped back into old habits.",
        "My partner says I'm overthinking it, but it's really starting to affect my mood.",
        "Money is a bit tight right now, so I'd prefer suggestions that don't cost much.",
        "I'm someone who needs concrete steps rather than vague encouragement.",
        "I have a pretty irregular schedule because of shift work.",
    ],
    "travel": [
        "We'll arrive on a Thursday morning and fly out on the last day in the evening.",
        "We love food markets, museums and long walks, but we're not into nightlife.",
        "Our budget is moderate; we'd rather spend on good food than fancy hotels.",
        "We'd like to use public transport rather than renting a car.",
        "One of us has a bad knee, so very steep hikes are out.",
        "It's our first time in that part of the world.",
        "We're staying in a rented apartment in the centre, so we'll cook breakfast ourselves.",
        "We want at least one day that feels relaxed rather than rushing from sight to sight.",
    ],
    "math": [
        "This is from my homework and I want to understand the method, not just the answer.",
        "I tried it myself and got a different answer from the one in the back of the book.",
        "I'm helping my son with his maths and I've forgotten how to do this.",
        "I'm revising for a test and keep making mistakes on problems like this.",
        "Please show every step, even the obvious ones.",
    ],
    "cooking": [
        "I'm cooking for my in-laws on Saturday and I really want it to go well.",
        "I'm a fairly inexperienced cook, so please don't skip steps that seem obvious.",
        "I only have a small kitchen with two burners and a basic oven.",
        "One person I'm cooking for doesn't like very spicy food.",
        "I'd like something I can partly prepare in advance.",
    ],
    "writing": [
        "English isn't my first language, so I want to make sure it sounds natural.",
        "I've rewritten this three times and I'm still not happy with it.",
        "It's going to a senior person, so the tone matters.",
        "I tend to write too much, so please keep it tight.",
    ],
}


def with_context(rng, cat, core, p=0.55, k_max=3):
    """Prepend 1..k_max context sentences from CONTEXTS[cat] with probability p."""
    if rng.random() >= p:
        return core
    sents = sample(rng, CONTEXTS[cat], rng.randint(1, k_max))
    fill = dict(age=rng.randint(22, 58), job=pick(rng, JOBS), city=pick(rng, CITIES))
    return " ".join(x.format(**fill) for x in sents) + " " + core


def lowerfirst(s: str) -> str:
    return s[:1].lower() + s[1:] if s and not s[:2].isupper() else s


# --------------------------------------------------------------------------------------------
# Programming
# --------------------------------------------------------------------------------------------

# key: groups implementations of the same task in different languages (used for "convert" prompts)
SNIPPETS = [
    dict(key="topwords", lang="python", fn="top_words",
         task="returns the n most common words in a text file, ignoring case and punctuation",
         code=D(r'''
            import re
            from collections import Counter


            def top_words(path, n=10):
                """Return the n most common words in the file at `path` as (word, count) pairs."""
                with open(path, encoding="utf-8") as f:
                    text = f.read().lower()
                words = re.findall(r"[a-z']+", text)
                return Counter(words).most_common(n)
            '''),
         points=["The whole file is read and lower-cased so that `The` and `the` count as the same word.",
                 "`re.findall(r\"[a-z']+\", text)` keeps runs of letters and apostrophes, which drops punctuation and digits but keeps contractions like `don't`.",
                 "`Counter.most_common(n)` does the counting and returns the n most frequent words, ties broken by first appearance."],
         complexity="O(N) time for N characters in the file, plus O(U log n) to pick the top n of U unique words",
         usage='for word, count in top_words("moby_dick.txt", 5):\n    print(f"{word:>10} {count}")',
         edge="For very large files you could read line by line and update the Counter incrementally instead of loading everything into memory."),
    dict(key="merge", lang="python", fn="merge_sorted",
         task="merges two sorted lists into one sorted list without calling sort()",
         code=D('''
            def merge_sorted(a, b):
                """Merge two already-sorted lists into a new sorted list."""
                result = []
                i = j = 0
                while i < len(a) and j < len(b):
                    if a[i] <= b[j]:
                        result.append(a[i])
                        i += 1
                    else:
                        result.append(b[j])
                        j += 1
                # One of the lists is exhausted; the rest of the other is already sorted.
                result.extend(a[i:])
                result.extend(b[j:])
                return result
            '''),
         points=["Two indices walk through the lists at the same time, always taking the smaller front element.",
                 "Using `<=` makes the merge stable: equal elements from `a` come before those from `b`.",
                 "When one list runs out, the remainder of the other is appended in one step with `extend`."],
         complexity="O(len(a) + len(b)) time and O(len(a) + len(b)) extra space",
         usage="print(merge_sorted([1, 4, 9], [2, 3, 10, 11]))  # [1, 2, 3, 4, 9, 10, 11]",
         edge="If you only need to iterate over the result, `heapq.merge(a, b)` from the standard library does the same lazily."),
    dict(key="lru", lang="python", fn="LRUCache",
         task="implements a small LRU cache class with get and put methods and a fixed capacity",
         code=D('''
            from collections import OrderedDict


            class LRUCache:
                def __init__(self, capacity: int):
                    if capacity <= 0:
                        raise ValueError("capacity must be positive")
                    self.capacity = capacity
                    self._data = OrderedDict()

                def get(self, key, default=None):
                    if key not in self._data:
                        return default
                    self._data.move_to_end(key)      # mark as most recently used
                    return self._data[key]

                def put(self, key, value):
                    if key in self._data:
                        self._data.move_to_end(key)
                    self._data[key] = value
                    if len(self._data) > self.capacity:
                        self._data.popitem(last=False)  # evict the least recently used item
            '''),
         points=["`OrderedDict` remembers insertion order, and `move_to_end` lets us treat the end of the dict as \"most recently used\".",
                 "`get` moves the key to the end on every hit, so frequently read keys stay in the cache.",
                 "`put` evicts from the front with `popitem(last=False)` once the capacity is exceeded."],
         complexity="O(1) average time for both get and put",
         usage='cache = LRUCache(2)\ncache.put("a", 1)\ncache.put("b", 2)\ncache.get("a")       # "a" is now most recent\ncache.put("c", 3)    # evicts "b"\nprint(cache.get("b"))  # None',
         edge="If you just want to cache a function's results, `functools.lru_cache` is already built in and thread-safe."),
    dict(key="flatten", lang="python", fn="flatten",
         task="flattens an arbitrarily nested list into a flat sequence",
         code=D('''
            from collections.abc import Iterable


            def flatten(items):
                """Yield the leaves of an arbitrarily nested iterable (strings count as leaves)."""
                for item in items:
                    if isinstance(item, Iterable) and not isinstance(item, (str, bytes)):
                        yield from flatten(item)
                    else:
                        yield item
            '''),
         points=["The function is a generator, so it produces values lazily instead of building intermediate lists.",
                 "`yield from flatten(item)` recurses into any nested iterable such as lists, tuples or sets.",
                 "Strings and bytes are treated as leaves, otherwise `\"abc\"` would be split into characters forever."],
         complexity="O(N) time for N total elements; recursion depth equals the nesting depth",
         usage="print(list(flatten([1, [2, [3, 4]], (5,), \"six\"])))  # [1, 2, 3, 4, 5, 'six']",
         edge="Extremely deep nesting (around 1000 levels) will hit Python's recursion limit; an explicit stack avoids that."),
    dict(key="retry", lang="python", fn="retry",
         task="is a decorator that retries a function with exponential backoff when it raises an exception",
         code=D('''
            import functools
            import random
            import time


            def retry(times=3, base_delay=0.5, exceptions=(Exception,)):
                """Retry the wrapped function up to `times` attempts with exponential backoff."""
                def decorator(func):
                    @functools.wraps(func)
                    def wrapper(*args, **kwargs):
                        for attempt in range(1, times + 1):
                            try:
                                return func(*args, **kwargs)
                            except exceptions:
                                if attempt == times:
                                    raise
                                delay = base_delay * 2 ** (attempt - 1)
                                time.sleep(delay + random.uniform(0, delay / 2))  # jitter
                    return wrapper
                return decorator
            '''),
         points=["`retry(...)` is a decorator factory: it takes the settings and returns the actual decorator.",
                 "The delay doubles after each failure (0.5s, 1s, 2s, ...) and a little random jitter avoids many clients retrying in lockstep.",
                 "On the last attempt the exception is re-raised unchanged so callers still see the real error.",
                 "`functools.wraps` keeps the original function's name and docstring."],
         complexity="At most `times` calls; total waiting time grows as base_delay * (2^(times-1) - 1) plus jitter",
         usage='@retry(times=5, exceptions=(ConnectionError,))\ndef fetch_status():\n    ...',
         edge="Only retry operations that are safe to repeat (idempotent); retrying a payment request blindly can charge someone twice."),
    dict(key="bsearch", lang="python", fn="binary_search",
         task="performs binary search on a sorted list and returns the index of the target or -1",
         code=D('''
            def binary_search(items, target):
                lo, hi = 0, len(items) - 1
                while lo <= hi:
                    mid = (lo + hi) // 2
                    if items[mid] == target:
                        return mid
                    if items[mid] < target:
                        lo = mid + 1
                    else:
                        hi = mid - 1
                return -1
            '''),
         points=["`lo` and `hi` bound the part of the list that could still contain the target.",
                 "Each iteration compares against the middle element and discards half of the remaining range.",
                 "When `lo` passes `hi` the range is empty, so the target is not present and we return -1."],
         complexity="O(log n) time and O(1) extra space",
         usage="print(binary_search([2, 5, 8, 12, 16, 23], 12))  # 3",
         edge="The standard library's `bisect.bisect_left` gives you the insertion point and is well tested."),
    dict(key="bsearch", lang="javascript", fn="binarySearch",
         task="performs binary search on a sorted array and returns the index of the target or -1",
         code=D('''
            function binarySearch(arr, target) {
              let lo = 0;
              let hi = arr.length - 1;
              while (lo <= hi) {
                const mid = Math.floor((lo + hi) / 2);
                if (arr[mid] === target) return mid;
                if (arr[mid] < target) lo = mid + 1;
                else hi = mid - 1;
              }
              return -1;
            }
            '''),
         points=["`lo` and `hi` track the window of the array still worth searching.",
                 "`Math.floor` is needed because JavaScript division always produces a float.",
                 "Strict equality `===` avoids surprising coercions such as `'5' == 5`."],
         complexity="O(log n) time and O(1) extra space",
         usage="console.log(binarySearch([1, 3, 5, 7, 9], 7)); // 3",
         edge="For arrays of strings the `<` comparison is lexicographic, which is usually what you want for sorted string arrays."),
    dict(key="bsearch", lang="go", fn="BinarySearch",
         task="performs binary search on a sorted slice of ints and returns the index of the target or -1",
         code=D('''
            package search

            // BinarySearch returns the index of target in the sorted slice xs, or -1.
            func BinarySearch(xs []int, target int) int {
            	lo, hi := 0, len(xs)-1
            	for lo <= hi {
            		mid := lo + (hi-lo)/2 // avoids overflow for very large slices
            		switch {
            		case xs[mid] == target:
            			return mid
            		case xs[mid] < target:
            			lo = mid + 1
            		default:
            			hi = mid - 1
            		}
            	}
            	return -1
            }
            '''),
         points=["Go has no `while`, so a `for` loop with a condition plays that role.",
                 "`lo + (hi-lo)/2` computes the midpoint without the overflow that `(lo+hi)/2` can cause.",
                 "A tagless `switch` reads more cleanly than a chain of if/else."],
         complexity="O(log n) time and O(1) extra space",
         usage="fmt.Println(search.BinarySearch([]int{1, 4, 9, 16, 25}, 16)) // 3",
         edge="The standard library already offers `sort.SearchInts` and, since Go 1.21, `slices.BinarySearch`."),
    dict(key="debounce", lang="javascript", fn="debounce",
         task="debounces another function so it only runs after the user stops triggering it for a given delay",
         code=D('''
            function debounce(fn, delay = 300) {
              let timerId;
              return function debounced(...args) {
                clearTimeout(timerId);
                timerId = setTimeout(() => fn.apply(this, args), delay);
              };
            }

            // Example: only search after the user pauses typing
            const input = document.querySelector('#search');
            input.addEventListener('input', debounce((e) => {
              console.log('Searching for', e.target.value);
            }, 400));
            '''),
         points=["Every call clears the pending timer and starts a new one, so `fn` only fires once the calls stop for `delay` ms.",
                 "The closure keeps `timerId` private between calls.",
                 "`fn.apply(this, args)` forwards both the arguments and the `this` value of the latest call."],
         complexity="O(1) work per call",
         usage="window.addEventListener('resize', debounce(() => layout(), 200));",
         edge="If you also need the function to fire immediately on the first call (a \"leading edge\" debounce), add a flag that runs `fn` when no timer is pending."),
    dict(key="groupby", lang="javascript", fn="groupBy",
         task="groups an array of objects by the value of a given key",
         code=D('''
            function groupBy(items, key) {
              return items.reduce((groups, item) => {
                const value = typeof key === 'function' ? key(item) : item[key];
                (groups[value] ||= []).push(item);
                return groups;
              }, {});
            }

            const orders = [
              { id: 1, status: 'shipped' },
              { id: 2, status: 'pending' },
              { id: 3, status: 'shipped' },
            ];
            console.log(groupBy(orders, 'status'));
            // { shipped: [{id: 1, ...}, {id: 3, ...}], pending: [{id: 2, ...}] }
            '''),
         points=["`reduce` builds up a single object whose keys are the group values.",
                 "`key` may be a property name or a function, which makes it easy to group by computed values such as a date's month.",
                 "`||=` creates the array the first time a group is seen."],
         complexity="O(n) time for n items",
         usage="const byYear = groupBy(posts, (p) => new Date(p.date).getFullYear());",
         edge="Modern runtimes (Node 21+, recent browsers) ship `Object.groupBy(items, fn)` which does the same thing natively."),
    dict(key="fetchtimeout", lang="javascript", fn="fetchJson",
         task="fetches JSON from a URL but gives up after a timeout",
         code=D('''
            async function fetchJson(url, { timeoutMs = 5000, ...options } = {}) {
              const controller = new AbortController();
              const timer = setTimeout(() => controller.abort(), timeoutMs);
              try {
                const res = await fetch(url, { ...options, signal: controller.signal });
                if (!res.ok) {
                  throw new Error(`HTTP ${res.status} for ${url}`);
                }
                return await res.json();
              } finally {
                clearTimeout(timer);
              }
            }
            '''),
         points=["`AbortController` gives us a signal that `fetch` listens to; calling `abort()` cancels the request.",
                 "The timer is cleared in `finally` so it never fires after a successful response.",
                 "`fetch` does not reject on HTTP errors like 404 or 500, so we check `res.ok` ourselves."],
         complexity="One network request; the timeout bounds how long the caller waits",
         usage="const user = await fetchJson('/api/users/42', { timeoutMs: 3000 });",
         edge="In newer runtimes you can write `fetch(url, { signal: AbortSignal.timeout(5000) })` instead of managing the controller yourself."),
    dict(key="chunk", lang="typescript", fn="chunk",
         task="splits an array into chunks of a given size, with proper generic types",
         code=D('''
            export function chunk<T>(items: readonly T[], size: number): T[][] {
              if (!Number.isInteger(size) || size <= 0) {
                throw new RangeError(`size must be a positive integer, got ${size}`);
              }
              const out: T[][] = [];
              for (let i = 0; i < items.length; i += size) {
                out.push(items.slice(i, i + size));
              }
              return out;
            }
            '''),
         points=["The generic parameter `T` means `chunk([1, 2, 3], 2)` is typed as `number[][]` and `chunk(['a'], 1)` as `string[][]`.",
                 "`readonly T[]` lets callers pass read-only arrays and documents that the input is not modified.",
                 "`slice` never runs past the end of the array, so the last chunk is simply shorter."],
         complexity="O(n) time and O(n) space",
         usage="chunk([1, 2, 3, 4, 5], 2); // [[1, 2], [3, 4], [5]]",
         edge="Validating `size` matters: with 0 the loop would never advance."),
    dict(key="countlines", lang="go", fn="CountMatches",
         task="reads a file line by line and counts the lines that contain a given word",
         code=D('''
            package main

            import (
            	"bufio"
            	"fmt"
            	"os"
            	"strings"
            )

            func CountMatches(path, word string) (int, error) {
            	f, err := os.Open(path)
            	if err != nil {
            		return 0, err
            	}
            	defer f.Close()

            	count := 0
            	scanner := bufio.NewScanner(f)
            	for scanner.Scan() {
            		if strings.Contains(scanner.Text(), word) {
            			count++
            		}
            	}
            	return count, scanner.Err()
            }

            func main() {
            	n, err := CountMatches("server.log", "ERROR")
            	if err != nil {
            		fmt.Fprintln(os.Stderr, err)
            		os.Exit(1)
            	}
            	fmt.Printf("%d matching lines\n", n)
            }
            '''),
         points=["`bufio.Scanner` reads the file one line at a time, so memory use stays flat even for huge logs.",
                 "`defer f.Close()` guarantees the file is closed when the function returns.",
                 "`scanner.Err()` reports any read error that stopped the loop early; returning it is easy to forget."],
         complexity="O(total bytes in the file) time and O(longest line) memory",
         usage='n, err := CountMatches("/var/log/syslog", "timeout")',
         edge="Scanner's default maximum line length is 64 KiB; call `scanner.Buffer(make([]byte, 0, 1024*1024), 10*1024*1024)` if lines can be longer."),
    dict(key="workers", lang="go", fn="process",
         task="processes a slice of jobs concurrently with a fixed number of worker goroutines",
         code=D('''
            func process(jobs []string, workers int, handle func(string) error) []error {
            	in := make(chan int)
            	errs := make([]error, len(jobs))
            	var wg sync.WaitGroup

            	for w := 0; w < workers; w++ {
            		wg.Add(1)
            		go func() {
            			defer wg.Done()
            			for i := range in {
            				errs[i] = handle(jobs[i])
            			}
            		}()
            	}
            	for i := range jobs {
            		in <- i
            	}
            	close(in)
            	wg.Wait()
            	return errs
            }
            '''),
         points=["A fixed number of goroutines read job indices from a channel, which caps concurrency at `workers`.",
                 "Each worker writes to its own slot `errs[i]`, so no mutex is needed for the results.",
                 "Closing the channel ends the `range` loops, and `wg.Wait()` blocks until every worker has finished."],
         complexity="O(len(jobs)) handler calls, at most `workers` running at the same time",
         usage='errs := process(urls, 8, func(u string) error { return download(u) })',
         edge="If you need cancellation on the first error, `golang.org/x/sync/errgroup` with `SetLimit` is a tidy alternative."),
    dict(key="palindrome", lang="rust", fn="is_palindrome",
         task="checks whether a string is a palindrome, ignoring case and non-alphanumeric characters",
         code=D('''
            fn is_palindrome(s: &str) -> bool {
                let chars: Vec<char> = s
                    .chars()
                    .filter(|c| c.is_alphanumeric())
                    .flat_map(|c| c.to_lowercase())
                    .collect();
                chars.iter().eq(chars.iter().rev())
            }

            fn main() {
                for s in ["A man, a plan, a canal: Panama", "hello", "Was it a car or a cat I saw?"] {
                    println!("{s:?} -> {}", is_palindrome(s));
                }
            }
            '''),
         points=["`chars()` iterates over Unicode scalar values rather than bytes, so accented letters are handled correctly.",
                 "`to_lowercase()` returns an iterator because some characters lower-case to more than one char, hence `flat_map`.",
                 "`iter().eq(iter().rev())` compares the sequence with its reverse without allocating a second vector."],
         complexity="O(n) time and O(n) space for the filtered characters",
         usage='assert!(is_palindrome("No lemon, no melon"));',
         edge="To avoid the allocation you could walk two `char_indices` iterators from both ends, at the cost of slightly more code."),
    dict(key="palindrome", lang="python", fn="is_palindrome",
         task="checks whether a string is a palindrome, ignoring case and non-alphanumeric characters",
         code=D('''
            def is_palindrome(s: str) -> bool:
                cleaned = [ch.lower() for ch in s if ch.isalnum()]
                return cleaned == cleaned[::-1]
            '''),
         points=["The list comprehension keeps only letters and digits and lower-cases them.",
                 "`cleaned[::-1]` is the reversed list; comparing the two answers the question directly.",
                 "`str.isalnum()` understands Unicode, so `\"Ésé\"` works too."],
         complexity="O(n) time and O(n) space",
         usage='print(is_palindrome("Was it a car or a cat I saw?"))  # True',
         edge="For huge strings a two-pointer loop avoids building the reversed copy."),
    dict(key="wordcount", lang="rust", fn="word_counts",
         task="counts how often each word appears in a string and returns a HashMap",
         code=D('''
            use std::collections::HashMap;

            fn word_counts(text: &str) -> HashMap<String, usize> {
                let mut counts = HashMap::new();
                for word in text
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                {
                    *counts.entry(word.to_lowercase()).or_insert(0) += 1;
                }
                counts
            }
            '''),
         points=["Splitting on every non-alphanumeric character removes punctuation; empty pieces are filtered out.",
                 "The `entry` API inserts 0 for unseen words and returns a mutable reference, so one line updates the count.",
                 "Keys are owned `String`s because `to_lowercase()` creates new strings."],
         complexity="O(n) expected time for n characters",
         usage='let counts = word_counts("the cat and the hat");\nassert_eq!(counts["the"], 2);',
         edge="HashMap iteration order is random; collect into a Vec and sort if you want to print the most common words."),
    dict(key="reverselist", lang="java", fn="reverse",
         task="reverses a singly linked list iteratively",
         code=D('''
            public class LinkedListUtils {
                static class Node {
                    int value;
                    Node next;
                    Node(int value, Node next) { this.value = value; this.next = next; }
                }

                public static Node reverse(Node head) {
                    Node prev = null;
                    Node current = head;
                    while (current != null) {
                        Node next = current.next; // remember the rest of the list
                        current.next = prev;      // point this node backwards
                        prev = current;
                        current = next;
                    }
                    return prev; // the old tail is the new head
                }
            }
            '''),
         points=["Three references are enough: the node we are on, the one before it and the one after it.",
                 "Each step flips one `next` pointer to point backwards.",
                 "When `current` becomes null, `prev` holds the old tail, which is the head of the reversed list."],
         complexity="O(n) time and O(1) extra space",
         usage="Node head = new Node(1, new Node(2, new Node(3, null)));\nhead = reverse(head); // 3 -> 2 -> 1",
         edge="A recursive version is shorter but uses O(n) stack space and can overflow on long lists."),
    dict(key="reversestr", lang="c", fn="reverse",
         task="reverses a string in place",
         code=D(r'''
            #include <stdio.h>
            #include <string.h>

            void reverse(char *s) {
                size_t len = strlen(s);
                if (len < 2) return;
                for (size_t i = 0, j = len - 1; i < j; i++, j--) {
                    char tmp = s[i];
                    s[i] = s[j];
                    s[j] = tmp;
                }
            }

            int main(void) {
                char word[] = "benchmark";
                reverse(word);
                printf("%s\n", word); /* kramhcneb */
                return 0;
            }
            '''),
         points=["Two indices start at both ends and swap characters until they meet in the middle.",
                 "The early return for strings shorter than 2 avoids computing `len - 1` on an empty string, which would wrap around because `size_t` is unsigned.",
                 "`word` is declared as an array, not `char *word = \"...\"`, because string literals must not be modified."],
         complexity="O(n) time and O(1) extra space",
         usage='char s[] = "hello";\nreverse(s);',
         edge="This reverses bytes, so multi-byte UTF-8 characters such as `é` would be scrambled."),
    dict(key="bsearch", lang="cpp", fn="binarySearch",
         task="performs binary search on a sorted vector and returns the index of the target or -1",
         code=D('''
            #include <vector>

            int binarySearch(const std::vector<int>& v, int target) {
                int lo = 0, hi = static_cast<int>(v.size()) - 1;
                while (lo <= hi) {
                    int mid = lo + (hi - lo) / 2;
                    if (v[mid] == target) return mid;
                    if (v[mid] < target) lo = mid + 1;
                    else hi = mid - 1;
                }
                return -1;
            }
            '''),
         points=["The vector is passed by const reference so nothing is copied.",
                 "`lo + (hi - lo) / 2` avoids signed overflow for very large sizes.",
                 "The cast avoids mixing signed and unsigned arithmetic when the vector is empty."],
         complexity="O(log n) time and O(1) extra space",
         usage="std::vector<int> v{1, 3, 5, 7};\nint i = binarySearch(v, 5); // 2",
         edge="`std::lower_bound` from <algorithm> is the idiomatic standard-library alternative."),
    dict(key="topcustomers", lang="sql", fn="top customers query",
         task="finds the top 5 customers by total order value over the last 30 days",
         code=D('''
            SELECT c.id,
                   c.name,
                   SUM(o.total_amount) AS total_spent,
                   COUNT(*)            AS order_count
            FROM customers AS c
            JOIN orders    AS o ON o.customer_id = c.id
            WHERE o.created_at >= CURRENT_DATE - INTERVAL '30 days'
              AND o.status <> 'cancelled'
            GROUP BY c.id, c.name
            ORDER BY total_spent DESC
            LIMIT 5;
            '''),
         points=["The `JOIN` connects each order to its customer, and `WHERE` keeps only recent, non-cancelled orders.",
                 "`GROUP BY c.id, c.name` produces one row per customer so `SUM` and `COUNT` aggregate their orders.",
                 "`ORDER BY total_spent DESC LIMIT 5` keeps the five biggest spenders."],
         complexity="Dominated by scanning recent orders; an index on `orders(created_at)` or `orders(customer_id, created_at)` keeps it fast",
         usage="-- run it in psql or your SQL client of choice",
         edge="`INTERVAL '30 days'` is PostgreSQL syntax; in MySQL write `CURRENT_DATE - INTERVAL 30 DAY`."),
    dict(key="backup", lang="bash", fn="backup.sh",
         task="backs up a directory into a timestamped tar.gz archive and deletes backups older than 7 days",
         code=D('''
            #!/usr/bin/env bash
            set -euo pipefail

            SRC_DIR="${1:?usage: backup.sh SRC_DIR [DEST_DIR]}"
            DEST_DIR="${2:-$HOME/backups}"
            STAMP="$(date +%Y-%m-%d_%H%M%S)"
            NAME="$(basename "$SRC_DIR")"

            mkdir -p "$DEST_DIR"
            tar -czf "$DEST_DIR/${NAME}_${STAMP}.tar.gz" -C "$(dirname "$SRC_DIR")" "$NAME"
            echo "Created $DEST_DIR/${NAME}_${STAMP}.tar.gz"

            # Remove archives of this directory older than 7 days
            find "$DEST_DIR" -name "${NAME}_*.tar.gz" -type f -mtime +7 -print -delete
            '''),
         points=["`set -euo pipefail` stops the script on errors, unset variables and failures inside pipes.",
                 "`${1:?...}` exits with a usage message if no source directory is given; `${2:-...}` supplies a default destination.",
                 "`tar -C` changes into the parent directory first, so the archive contains `project/...` rather than the full absolute path.",
                 "`find ... -mtime +7 -delete` removes only this directory's archives that are more than 7 days old."],
         complexity="Linear in the size of the directory being archived",
         usage="./backup.sh ~/projects/website /mnt/external/backups",
         edge="Run it from cron, e.g. `0 2 * * * /home/me/bin/backup.sh /home/me/notes`, to get nightly backups."),
]

CONCEPTS = [
    ("What's the difference between a list and a tuple in Python?",
     ["Both lists and tuples are ordered sequences that can hold any mix of objects, and both support indexing, slicing and iteration. The key difference is mutability: a list can be changed after it is created, a tuple cannot.",
      "Because tuples are immutable, they are hashable (as long as their elements are), which means they can be used as dictionary keys or stored in sets. A list can never be a dict key.",
      "By convention, lists hold a variable number of items of the same kind (`[\"apple\", \"pear\", \"fig\"]`), while tuples hold a fixed structure where position has meaning, like `(x, y)` coordinates or a `(name, age)` record.",
      "Tuples are also slightly smaller in memory and a bit faster to create, but that is rarely the reason to choose one. Pick a tuple when the data shouldn't change and a list when it should."]),
    ("Can you explain the difference between `let`, `const` and `var` in JavaScript?",
     ["`var` is the old way to declare variables. It is function-scoped, not block-scoped, and it is hoisted: the declaration moves to the top of the function and the variable is `undefined` until the assignment runs.",
      "`let` and `const` were added in ES2015 and are block-scoped, so a variable declared inside an `if` or `for` block doesn't leak outside it. Accessing them before the declaration throws a ReferenceError (the \"temporal dead zone\").",
      "`const` additionally forbids reassignment. Note that it doesn't make objects immutable: `const user = {}; user.name = 'Ana';` is perfectly legal, you just can't write `user = somethingElse`.",
      "A good default in modern code is: use `const` everywhere, switch to `let` when you really need to reassign, and avoid `var`."]),
    ("How do goroutines differ from OS threads?",
     ["Goroutines are lightweight functions scheduled by the Go runtime rather than by the operating system. A new goroutine starts with a tiny stack (a few kilobytes) that grows as needed, so you can run hundreds of thousands of them.",
      "The runtime multiplexes goroutines onto a smaller number of OS threads (M:N scheduling). When a goroutine blocks on I/O or a channel, the scheduler parks it and runs another one on the same thread.",
      "OS threads, by contrast, have large fixed stacks (often 1-8 MB), are more expensive to create and context-switch, and are scheduled by the kernel.",
      "The practical upshot is that in Go you can write straightforward blocking code, one goroutine per connection or task, and still get high concurrency. You coordinate them with channels or the `sync` package instead of manual thread pools."]),
    ("What is ownership in Rust and why does it matter?",
     ["Ownership is Rust's rule set for managing memory without a garbage collector. Every value has exactly one owner, and when the owner goes out of scope the value is dropped and its memory freed.",
      "Assigning a heap value like a `String` to another variable moves it: the original variable can no longer be used. Types that are cheap to copy, like integers, implement `Copy` and are duplicated instead.",
      "To use a value without taking ownership you borrow it with a reference. You can have many shared references (`&T`) or exactly one mutable reference (`&mut T`) at a time, never both.",
      "These rules are checked at compile time by the borrow checker. They rule out use-after-free, double frees and data races before the program ever runs, which is why Rust can be both fast and memory safe."]),
    ("What's the difference between INNER JOIN, LEFT JOIN and FULL OUTER JOIN in SQL?",
     ["An `INNER JOIN` returns only the rows where the join condition matches in both tables. If a customer has no orders, that customer disappears from the result.",
      "A `LEFT JOIN` returns every row from the left table, plus matching rows from the right table. Where there is no match, the right-hand columns are filled with NULL. This is the one you want for questions like \"all customers and their orders, including customers who never ordered\".",
      "A `RIGHT JOIN` is the mirror image, and most people just swap the table order and use a LEFT JOIN instead.",
      "A `FULL OUTER JOIN` returns all rows from both tables, matched where possible and padded with NULLs on whichever side is missing. It's useful for reconciliation, e.g. comparing two lists of IDs. MySQL doesn't support it directly; you emulate it with a UNION of a left and a right join."]),
    ("When should I use git rebase instead of git merge?",
     ["Both commands integrate changes from one branch into another. `git merge` creates a merge commit that ties the two histories together and leaves existing commits untouched.",
      "`git rebase` replays your commits on top of the other branch, producing new commits with new hashes and a linear history, as if you had started your work from the latest main.",
      "Rebase is great for cleaning up your own local feature branch before opening a pull request: you get a tidy, linear history and can squash or reword commits with `git rebase -i`.",
      "The golden rule is to never rebase commits that other people have already based work on, such as a shared branch that has been pushed. Rewriting that history forces everyone else to untangle duplicated commits. For shared branches, merge."]),
    ("Can you explain the difference between a process and a thread?",
     ["A process is a running program with its own isolated address space, file handles and resources. One process can't read another's memory without going through the operating system.",
      "A thread is a path of execution inside a process. All threads in a process share the same memory and open files, but each has its own stack and registers.",
      "Because threads share memory, communicating between them is cheap, but it also means you need locks or other synchronization to avoid race conditions. Processes are safer because a crash or bug in one doesn't corrupt the others, but exchanging data between them requires pipes, sockets or shared-memory segments.",
      "Creating a process is also more expensive than creating a thread. Web browsers are a good example of the trade-off: they often run each tab in its own process for isolation and use many threads inside each one."]),
    ("What's the difference between the stack and the heap?",
     ["The stack is a region of memory that stores function call frames: local variables, arguments and return addresses. Allocation is just moving a pointer, so it's extremely fast, and memory is freed automatically when the function returns.",
      "The stack is small (often 1-8 MB per thread) and sizes must generally be known at compile time, which is why huge arrays or deep recursion can cause a stack overflow.",
      "The heap is a large pool used for data whose size or lifetime isn't known in advance, such as a list that grows or an object returned from a function. Allocating there is slower and the memory has to be released, either manually (`free` in C), via ownership rules (Rust) or by a garbage collector (Java, Python, Go).",
      "In short: the stack is fast, automatic and limited; the heap is flexible but costs more to manage."]),
    ("What does async/await actually do in Python?",
     ["`async def` defines a coroutine function. Calling it doesn't run the body; it returns a coroutine object that an event loop (such as asyncio's) can execute.",
      "`await` pauses the current coroutine until the awaited thing (another coroutine, a task or a future) finishes, and hands control back to the event loop in the meantime. That's what lets one thread juggle thousands of network connections.",
      "It's cooperative concurrency: a coroutine only yields at an `await`. If you call a blocking function like `time.sleep` or `requests.get` inside a coroutine, the whole event loop stops. Use `asyncio.sleep`, an async HTTP client, or `asyncio.to_thread` for blocking work.",
      "async/await helps with I/O-bound workloads (web servers, scrapers, chat bots). It doesn't speed up CPU-bound code; for that you need multiple processes."]),
    ("REST vs GraphQL: which should I use for a new API?",
     ["REST exposes resources at URLs (`/users/42`, `/users/42/orders`) and uses HTTP methods to act on them. It's simple, cacheable by ordinary HTTP infrastructure and universally understood.",
      "GraphQL exposes a single endpoint with a typed schema. Clients send a query describing exactly the fields they need, possibly across several related objects, and get back just that data in one round trip.",
      "GraphQL shines when many different clients (web, mobile, partners) need different shapes of the same data, or when REST would force lots of round trips. The cost is more server complexity: query cost limits, N+1 query problems and harder HTTP caching.",
      "For a small team building one front end on top of a straightforward data model, REST (possibly with an OpenAPI spec) is usually the pragmatic choice. Reach for GraphQL when client-driven data fetching is a real pain point."]),
]

REVIEWS = [
    dict(lang="python", desc="a small Flask endpoint for user signup and login",
         code=D('''
            import sqlite3
            from flask import Flask, request, jsonify

            app = Flask(__name__)
            DB = "users.db"


            def get_db():
                return sqlite3.connect(DB)


            @app.route("/signup", methods=["POST"])
            def signup():
                data = request.get_json()
                username = data["username"]
                password = data["password"]
                db = get_db()
                try:
                    db.execute(f"INSERT INTO users (username, password) VALUES ('{username}', '{password}')")
                    db.commit()
                except:
                    return jsonify({"error": "something went wrong"}), 500
                return jsonify({"ok": True})


            @app.route("/login", methods=["POST"])
            def login():
                data = request.get_json()
                db = get_db()
                row = db.execute(
                    f"SELECT password FROM users WHERE username = '{data['username']}'"
                ).fetchone()
                if row and row[0] == data["password"]:
                    return jsonify({"token": data["username"] + "-token"})
                return jsonify({"error": "invalid credentials"}), 401


            def add_tags(user, tags=[]):
                tags.append("new")
                user["tags"] = tags
                return user


            if __name__ == "__main__":
                app.run(debug=True, host="0.0.0.0")
            '''),
         issues=[
             ("SQL injection", "Both queries build SQL with f-strings, so a username like `x' OR '1'='1` changes the query. Use parameters: `db.execute(\"INSERT INTO users (username, password) VALUES (?, ?)\", (username, password_hash))`."),
             ("Plain-text passwords", "Passwords are stored and compared as plain text. Hash them with a slow, salted algorithm such as `werkzeug.security.generate_password_hash` / `check_password_hash` (or argon2/bcrypt)."),
             ("Predictable tokens", "`username + \"-token\"` is trivially forgeable. Issue a random session token (`secrets.token_urlsafe(32)`) stored server-side, or use a signed token such as a JWT or Flask's signed session."),
             ("Bare `except`", "`except:` also swallows things like `KeyboardInterrupt` and hides the real error. Catch `sqlite3.IntegrityError` to report \"username taken\" with a 409, and let unexpected errors be logged."),
             ("Connections are never closed", "`get_db()` opens a new connection per request and nothing closes it. Use `with closing(sqlite3.connect(DB)) as db:` or Flask's `g` object plus a teardown handler."),
             ("Missing input validation", "`data[\"username\"]` raises a KeyError (500) when a field is missing, and `request.get_json()` may return None. Validate the body and return 400 with a clear message."),
             ("Mutable default argument", "`add_tags(user, tags=[])` shares the same list across calls, so tags accumulate between users. Use `tags=None` and create a new list inside the function."),
             ("Debug mode on a public interface", "`debug=True` with `host=\"0.0.0.0\"` exposes the interactive Werkzeug debugger, which allows arbitrary code execution. Never ship that; read debug settings from the environment."),
         ]),
    dict(lang="javascript", desc="a React component that loads and displays a list of todos",
         code=D('''
            import React, { useState, useEffect } from 'react';

            export default function TodoList({ userId }) {
              const [todos, setTodos] = useState([]);
              const [filter, setFilter] = useState('all');
              const [loading, setLoading] = useState(false);

              useEffect(() => {
                setLoading(true);
                fetch('/api/users/' + userId + '/todos')
                  .then((res) => res.json())
                  .then((data) => {
                    setTodos(data);
                    setLoading(false);
                  });
              }, []);

              function toggle(index) {
                todos[index].done = !todos[index].done;
                setTodos(todos);
              }

              function addTodo(text) {
                todos.push({ text: text, done: false });
                setTodos(todos);
              }

              const visible = todos.filter((t) =>
                filter === 'all' ? true : filter === 'done' ? t.done : !t.done
              );

              return (
                <div>
                  {loading && <p>Loading...</p>}
                  <select onChange={(e) => setFilter(e.target.value)}>
                    <option value="all">All</option>
                    <option value="done">Done</option>
                    <option value="open">Open</option>
                  </select>
                  <ul>
                    {visible.map((todo, i) => (
                      <li key={i} onClick={() => toggle(i)}>
                        {todo.done ? <s>{todo.text}</s> : todo.text}
                      </li>
                    ))}
                  </ul>
                  <button onClick={() => addTodo(prompt('New todo?'))}>Add</button>
                </div>
              );
            }
            '''),
         issues=[
             ("Missing effect dependency", "The effect uses `userId` but the dependency array is `[]`, so switching users keeps showing the first user's todos. Use `[userId]`."),
             ("Race condition and no cleanup", "If `userId` changes quickly, an older response can arrive last and overwrite newer data. Use an `AbortController` or an `ignore` flag in the effect's cleanup function."),
             ("No error handling", "A failed request or a non-JSON response leaves `loading` stuck at true. Check `res.ok`, add a `.catch`, and store an error state to display."),
             ("State is mutated in place", "`toggle` and `addTodo` modify the existing array and pass the same reference to `setTodos`, so React may skip the re-render. Create new arrays/objects: `setTodos(prev => prev.map((t, j) => j === i ? { ...t, done: !t.done } : t))`."),
             ("Wrong index after filtering", "`toggle(i)` receives the index within `visible`, but it indexes into `todos`. With a filter active it toggles the wrong item. Give todos a stable `id` and toggle by id."),
             ("Index used as key", "`key={i}` breaks when items are added, removed or filtered. Use the todo's id as the key."),
             ("`prompt()` can return null", "If the user cancels, `addTodo(null)` adds an empty item. Check the value, and consider a controlled input instead of the blocking `prompt` dialog."),
             ("Accessibility", "Clickable `<li>` elements aren't keyboard accessible. Use a checkbox or a button inside the list item, and give the `<select>` a label."),
         ]),
    dict(lang="go", desc="a small HTTP service that stores key/value pairs in memory",
         code=D('''
            package main

            import (
            	"encoding/json"
            	"io/ioutil"
            	"net/http"
            )

            var store = map[string]string{}

            func setHandler(w http.ResponseWriter, r *http.Request) {
            	body, _ := ioutil.ReadAll(r.Body)
            	var req struct {
            		Key   string `json:"key"`
            		Value string `json:"value"`
            	}
            	json.Unmarshal(body, &req)
            	store[req.Key] = req.Value
            	w.Write([]byte("ok"))
            }

            func getHandler(w http.ResponseWriter, r *http.Request) {
            	key := r.URL.Query().Get("key")
            	value := store[key]
            	json.NewEncoder(w).Encode(map[string]string{"key": key, "value": value})
            }

            func proxyHandler(w http.ResponseWriter, r *http.Request) {
            	resp, err := http.Get(r.URL.Query().Get("url"))
            	if err != nil {
            		http.Error(w, err.Error(), 500)
            	}
            	data, _ := ioutil.ReadAll(resp.Body)
            	w.Write(data)
            }

            func main() {
            	http.HandleFunc("/set", setHandler)
            	http.HandleFunc("/get", getHandler)
            	http.HandleFunc("/proxy", proxyHandler)
            	http.ListenAndServe(":8080", nil)
            }
            '''),
         issues=[
             ("Data race on the map", "`store` is read and written from concurrent handler goroutines without synchronization. Go maps are not safe for that and the runtime may crash with `concurrent map writes`. Guard it with a `sync.RWMutex` or use `sync.Map`."),
             ("Ignored errors", "Errors from `ReadAll` and `json.Unmarshal` are discarded, so malformed JSON silently stores an empty key. Check them and return `400 Bad Request`."),
             ("No method checks", "`/set` accepts GET requests too. Reject anything but POST with `405 Method Not Allowed` (or use the method patterns in Go 1.22's ServeMux, e.g. `\"POST /set\"`)."),
             ("Unbounded request body", "`ReadAll` reads whatever the client sends. Wrap the body with `http.MaxBytesReader` to cap its size."),
             ("Nil pointer after a failed request", "In `proxyHandler`, when `http.Get` fails the function writes an error but keeps going and dereferences `resp`, which is nil. Add a `return` after `http.Error`, and `defer resp.Body.Close()` on success."),
             ("Open proxy / SSRF", "`/proxy` fetches any URL the caller supplies, including internal addresses like `http://169.254.169.254/`. Restrict it to an allow-list of hosts or remove it."),
             ("Missing timeouts", "`http.Get` and `ListenAndServe` use no timeouts, so slow clients or upstreams can hold goroutines forever. Use an `http.Client{Timeout: ...}` and an `http.Server` with `ReadHeaderTimeout` and friends."),
             ("Deprecated package and ignored server error", "`io/ioutil` is deprecated; use `io.ReadAll`. Also, `ListenAndServe`'s error is dropped, so a port conflict exits silently; wrap it in `log.Fatal`."),
         ]),
]

DEBUGS = [
    dict(lang="python", err='TypeError: can only concatenate str (not "int") to str',
         code=D('''
            age = 29
            message = "Next year you will be " + age + 1
            print(message)
            '''),
         cause="Python doesn't implicitly convert numbers to strings. `\"Next year you will be \" + age` tries to add an `int` to a `str`, which is not defined.",
         fix=D('''
            age = 29
            message = f"Next year you will be {age + 1}"
            print(message)
            '''),
         note="An f-string converts the value for you and also makes the arithmetic explicit. `str(age + 1)` would work too."),
    dict(lang="python", err="KeyError: 'email'",
         code=D('''
            users = [{"name": "Ana", "email": "ana@example.com"}, {"name": "Bo"}]
            for user in users:
                print(user["name"], user["email"])
            '''),
         cause="The second dictionary has no `\"email\"` key, and indexing a dict with a missing key raises `KeyError`.",
         fix=D('''
            users = [{"name": "Ana", "email": "ana@example.com"}, {"name": "Bo"}]
            for user in users:
                print(user["name"], user.get("email", "(no email)"))
            '''),
         note="`dict.get(key, default)` returns the default instead of raising. If the key is required, validate the data up front so the error points at the bad record."),
    dict(lang="javascript", err="TypeError: Cannot read properties of undefined (reading 'map')",
         code=D('''
            function ProductList({ data }) {
              return (
                <ul>
                  {data.products.map((p) => <li key={p.id}>{p.name}</li>)}
                </ul>
              );
            }
            '''),
         cause="On the first render `data` hasn't loaded yet, so `data.products` is `undefined`, and calling `.map` on `undefined` throws.",
         fix=D('''
            function ProductList({ data }) {
              const products = data?.products ?? [];
              return (
                <ul>
                  {products.map((p) => <li key={p.id}>{p.name}</li>)}
                </ul>
              );
            }
            '''),
         note="Optional chaining (`?.`) stops at `undefined`, and `?? []` supplies an empty list. Showing an explicit loading state is even better UX."),
    dict(lang="rust", err="error[E0502]: cannot borrow `scores` as mutable because it is also borrowed as immutable",
         code=D('''
            fn main() {
                let mut scores = vec![10, 20, 30];
                let first = &scores[0];
                scores.push(40);
                println!("first = {}", first);
            }
            '''),
         cause="`first` is a reference into the vector. `push` may reallocate the vector's buffer, which would leave `first` pointing at freed memory, so the borrow checker refuses to allow a mutable borrow while `first` is still used afterwards.",
         fix=D('''
            fn main() {
                let mut scores = vec![10, 20, 30];
                let first = scores[0]; // copy the i32 instead of borrowing it
                scores.push(40);
                println!("first = {}", first);
            }
            '''),
         note="Alternatively, finish using the reference before calling `push`. For non-Copy types you can `.clone()` the element."),
    dict(lang="go", err="panic: assignment to entry in nil map",
         code=D('''
            type Inventory struct {
            	counts map[string]int
            }

            func main() {
            	var inv Inventory
            	inv.counts["apples"] = 3
            }
            '''),
         cause="The zero value of a map is `nil`. Reading from a nil map returns zero values, but writing to one panics.",
         fix=D('''
            type Inventory struct {
            	counts map[string]int
            }

            func NewInventory() *Inventory {
            	return &Inventory{counts: make(map[string]int)}
            }

            func main() {
            	inv := NewInventory()
            	inv.counts["apples"] = 3
            }
            '''),
         note="A constructor function that initializes the map is the usual Go pattern."),
    dict(lang="java", err='Exception in thread "main" java.lang.NullPointerException: Cannot invoke "String.length()" because "name" is null',
         code=D('''
            public class Greeter {
                public static void main(String[] args) {
                    String name = System.getenv("USER_NAME");
                    System.out.println("Name has " + name.length() + " characters");
                }
            }
            '''),
         cause="`System.getenv` returns `null` when the environment variable isn't set, and calling a method on `null` throws a NullPointerException.",
         fix=D('''
            public class Greeter {
                public static void main(String[] args) {
                    String name = System.getenv().getOrDefault("USER_NAME", "guest");
                    System.out.println("Name has " + name.length() + " characters");
                }
            }
            '''),
         note="`Optional.ofNullable(...)` is another option when null is a legitimate value you want to handle explicitly."),
    dict(lang="python", err="ModuleNotFoundError: No module named 'requests'",
         code='import requests\n\nprint(requests.get("https://example.com").status_code)',
         cause="The `requests` package isn't installed in the Python environment that runs the script. Often it *is* installed, but for a different interpreter or virtual environment.",
         fix=D('''
            python -m venv .venv
            source .venv/bin/activate      # on Windows: .venv\\Scripts\\activate
            python -m pip install requests
            python script.py
            '''),
         note="Using `python -m pip` instead of bare `pip` guarantees the package goes into the same interpreter you run the script with."),
]

LANG_NAMES = {"python": "Python", "javascript": "JavaScript", "typescript": "TypeScript", "go": "Go",
              "rust": "Rust", "java": "Java", "c": "C", "cpp": "C++", "sql": "SQL", "bash": "Bash"}

WRITE_PROMPTS = [
    "Write a {L} function that {task}.",
    "Can you write {L} code that {task}?",
    "how do i write something in {L} that {task}",
    "I need a {L} snippet that {task}. Please include a short example of how to use it.",
    "Write {L} code that {task}. Explain how it works.",
    "Could you show me an idiomatic {L} implementation of something that {task}?",
]
WRITE_CONTEXT = [
    "",
    "",
    "It's for a small internal tool, so readability matters more than squeezing out performance. ",
    "I'm learning {L} and I'd like to see how an experienced developer would do it. ",
    "We have a code review culture that's pretty strict about edge cases, so please think about those. ",
    "This is for an interview practice problem. ",
    "I tried writing it myself but my version is messy and I'm not sure it handles all cases. ",
]
WRITE_INTROS = ["Here's a {L} implementation:", "Sure! Here's one way to do it in {L}:",
                "Here is a clean, idiomatic version:", "Certainly. Below is a {L} solution with comments.",
                "Here you go:"]


def code_block(lang, code):
    return f"```{lang}\n{code}\n```"


def snippet_answer(rng, sn, detail=None):
    L = LANG_NAMES[sn["lang"]]
    detail = max(rng.random(), rng.random()) if detail is None else detail
    parts = [pick(rng, WRITE_INTROS).format(L=L), code_block(sn["lang"], sn["code"])]

    if detail > 0.2:
        parts.append("How it works:\n\n" + bullets(sn["points"]))
    if detail > 0.45:
        parts.append(f"**Complexity:** {sn['complexity']}.")
    if detail > 0.55:
        parts.append("Example usage:\n\n" + code_block(sn["lang"], sn["usage"]))
    if detail > 0.7:
        parts.append(sn["edge"])
    if detail > 0.5 and rng.random() < 0.5:
        parts.append(pick(rng, ["Let me know if you'd like tests for it or a version with more error handling.",
                                "If you share how you plan to call it, I can adapt the interface to fit your code.",
                                f"Try it with a few edge cases (empty input, a single element, very large input) to convince yourself it behaves as expected."]))
    return "\n\n".join(parts)


def programming_followups(rng, sn):
    L = LANG_NAMES[sn["lang"]]
    fu = [
        (pick(rng, ["What's the time complexity of that?", "How efficient is this?",
                    "Is this fast enough for large inputs?"]),
         f"The complexity is {sn['complexity']}. " + sn["edge"]),
        (pick(rng, ["Can you show me how to call it?", "How would I use this in practice?", "example usage?"]),
         "Here's a usage example:\n\n" + code_block(sn["lang"], sn["usage"]) +
         f"\n\nThe key thing to remember is that {lowerfirst(sn['points'][0])}"),
        (pick(rng, ["Can you explain the code line by line?", "I don't fully get how it works, can you break it down?"]),
         f"Sure. Let's go through `{sn['fn']}` piece by piece:\n\n" + bullets(sn["points"], "1.") +
         "\n\nPut together, " + lowerfirst(sn["task"].replace("returns", "it returns", 1) if sn["task"].startswith("returns") else "the code " + sn["task"]) + "."),
        (pick(rng, ["Are there any edge cases I should worry about?", "What could go wrong with this?"]),
         f"A few things to keep in mind:\n\n- Test it with empty input and with a single element, which are the most common sources of off-by-one bugs.\n- {sn['edge']}\n- If the input can come from users, validate types early so errors point at the caller rather than deep inside `{sn['fn']}`."),
    ]
    others = [o for o in SNIPPETS if o["key"] == sn["key"] and o["lang"] != sn["lang"]]
    if others:
        o = pick(rng, others)
        OL = LANG_NAMES[o["lang"]]
        fu.append((f"Could you write the same thing in {OL}?",
                   f"Here's the {OL} equivalent of the {L} version above:\n\n" + code_block(o["lang"], o["code"]) +
                   "\n\nDifferences worth noting:\n\n" + bullets(o["points"][:2])))
    return fu


def gen_programming(rng, multi):
    kind = pick(rng, ["write", "write", "write", "explain", "concept", "concept", "debug", "review", "convert"])
    turns = []
    sn = None
    if kind == "convert":
        keys = sorted({s["key"] for s in SNIPPETS if sum(1 for t in SNIPPETS if t["key"] == s["key"]) > 1})
        key = pick(rng, keys)
        a, b = sample(rng, [s for s in SNIPPETS if s["key"] == key], 2)
        human = dress_prompt(rng, f"Can you convert this {LANG_NAMES[a['lang']]} code to {LANG_NAMES[b['lang']]}?\n\n"
                             + code_block(a["lang"], a["code"]), closer_p=0.2)
        ans = (f"Here's the {LANG_NAMES[b['lang']]} version:\n\n" + code_block(b["lang"], b["code"]) +
               "\n\nA few notes on the translation:\n\n" + bullets(b["points"]))
        turns.append((human, ans))
        sn = b
    elif kind == "write":
        sn = pick(rng, SNIPPETS)
        L = LANG_NAMES[sn["lang"]]
        core = pick(rng, WRITE_CONTEXT).format(L=L) + pick(rng, WRITE_PROMPTS).format(L=L, task=sn["task"])
        turns.append((dress_prompt(rng, core), snippet_answer(rng, sn)))
    elif kind == "explain":
        sn = pick(rng, SNIPPETS)
        L = LANG_NAMES[sn["lang"]]
        q = pick(rng, ["Can you explain what this code does?", "What does this {L} code do?",
                       "I found this in our codebase. Can someone explain it?", "explain this please"]).format(L=L)
        human = dress_prompt(rng, q + "\n\n" + code_block(sn["lang"], sn["code"]), closer_p=0.2)
        ans = (f"This {L} code {sn['task']}.\n\nStep by step:\n\n" + bullets(sn["points"]) +
               f"\n\nComplexity: {sn['complexity']}." + maybe(rng, 0.6, "\n\n" + sn["edge"]))
        turns.append((human, ans))
    elif kind == "concept":
        q, paras = pick(rng, CONCEPTS)
        n = rng.choice([3, 4, 4])
        human = dress_prompt(rng, q)
        turns.append((human, "\n\n".join(paras[:n])))
        if multi:
            turns.append((pick(rng, ["Can you give me a one-sentence summary?", "tl;dr?", "So what's the rule of thumb?"]),
                          paras[-1].split(". ")[0].rstrip(".") + "."))
            turns.append((pick(rng, ["Can you show a tiny code example?", "Do you have an example?"]),
                          "Here's a minimal illustration of the idea from my first answer:\n\n" + paras[min(1, len(paras) - 1)]
                          + "\n\nIf you try this out yourself, change one thing at a time and watch how the behaviour differs; that's usually the fastest way to build intuition."))
    elif kind == "debug":
        d = pick(rng, DEBUGS)
        L = LANG_NAMES[d["lang"]]
        q = pick(rng, ["I'm getting this error and I don't understand why:", "Why does this crash?",
                       "help, my {L} code throws an error", "Can you help me fix this error?"]).format(L=L)
        human = dress_prompt(rng, f"{q}\n\n" + code_block(d["lang"], d["code"]) + f"\n\nError:\n\n```\n{d['err']}\n```",
                             closer_p=0.2)
        ans = (f"{d['cause']}\n\nHere's a fixed version:\n\n" + code_block(d["lang"] if d["lang"] != "python" or "pip" not in d["fix"] else "bash", d["fix"])
               + f"\n\n{d['note']}")
        turns.append((human, ans))
        if multi:
            turns.append((pick(rng, ["That worked, thanks! How can I avoid this kind of bug in the future?",
                                     "ok that fixed it. any tips to not hit this again?"]),
                           "A few habits help:\n\n- Read the last line of the traceback first; it names the exact error and usually the variable involved.\n"
                           f"- {d['note']}\n- Add a small test that reproduces the failure before you fix it, so it can't come back silently.\n"
                           "- Turn on your editor's type checker or linter; many of these errors show up as warnings before you even run the code."))
    elif kind == "review":
        rv = pick(rng, REVIEWS)
        L = LANG_NAMES[rv["lang"]]
        q = pick(rng, [f"Can you review this {L} code? It's {rv['desc']}. I want to know about bugs, security problems and style issues.",
                       f"Please do a code review of {rv['desc']} I wrote. Be honest, it's going to production soon.",
                       f"review my code pls ({rv['desc']})"])
        human = q + "\n\n" + code_block(rv["lang"], rv["code"])
        k = rng.randint(4, len(rv["issues"]))
        items = rv["issues"][:k]
        ans = ("Thanks for sharing it. Overall the structure is easy to follow, but there are several issues worth fixing before this goes live, roughly in order of severity:\n\n"
               + "\n".join(f"{i}. **{t}.** {b}" for i, (t, b) in enumerate(items, 1))
               + maybe(rng, 0.6, "\n\nIf you want, I can rewrite the code with these fixes applied."))
        if k >= 6:
            ans += ("\n\n**Suggested order of work:**\n\n" + bullets([
                f"Fix {items[0][0].lower()} and {items[1][0].lower()} first; they are the ones that can hurt users or data.",
                "Add tests that reproduce each bug before fixing it, so the fixes stay fixed.",
                "Handle the remaining points as part of normal cleanup, ideally in small, separate commits that are easy to review."])
                + "\n\nNone of this is unusual for a first version; the structure is reasonable, and most of these fixes are only a few lines each.")
        turns.append((human, ans))
        if multi:
            t, b = items[0]
            turns.append((f"Can you explain the {t.lower()} point in more detail? Why is it such a big deal?",
                          f"Sure. {b}\n\nThe reason it's ranked first is impact: it's easy to exploit or to trigger by accident, and the consequences (data loss, a crash, or a security incident) are much worse than the other items. The fix is small and local, so it's the best return on effort in this review."))
    if multi and sn is not None and len(turns) < 4:
        fus = programming_followups(rng, sn)
        rng.shuffle(fus)
        turns.extend(fus[:rng.randint(1, 3)])
    return turns


# --------------------------------------------------------------------------------------------
# Math (answers are computed, so they are always correct)
# --------------------------------------------------------------------------------------------

def _fmt_money(x):
    return f"${x:,.2f}"


def math_linear(rng):
    x = rng.randint(-12, 15)
    a = rng.choice([2, 3, 4, 5, 6, 7, 8, 9, -3, -4])
    b = rng.randint(-20, 30)
    c = a * x + b
    bs = f"+ {b}" if b >= 0 else f"- {-b}"
    q = pick(rng, [f"Solve for x: {a}x {bs} = {c}", f"solve {a}x {bs} = {c}",
                   f"How do I solve the equation {a}x {bs} = {c}? Please show the steps."])
    op = f"Subtract {b} from both sides" if b >= 0 else f"Add {-b} to both sides"
    ans = D(f"""
        We want to isolate x.

        1. Start with the equation: {a}x {bs} = {c}
        2. {op}: {a}x = {c - b}
        3. Divide both sides by {a}: x = {c - b} / {a} = {x}

        **Check:** {a} × ({x}) {bs} = {a * x} {bs} = {c} ✓

        So **x = {x}**.
        """)
    return q, ans, [("What if the right-hand side was 0 instead?",
                     f"Then {a}x {bs} = 0, so {a}x = {-b} and x = {-b}/{a}" +
                     (f" = {-b // a}." if b % a == 0 else f" ≈ {-b / a:.4g}. It isn't a whole number this time, which is fine; the method is exactly the same."))]


def math_discount(rng):
    price = rng.choice([39.99, 59.5, 80, 120, 149.99, 249, 19.95, 75])
    off = rng.choice([10, 15, 20, 25, 30, 40])
    tax = rng.choice([0, 5, 7.5, 8, 13, 20])
    item = pick(rng, ["jacket", "pair of headphones", "backpack", "lamp", "board game", "coffee grinder"])
    sale = round(price * (1 - off / 100), 2)
    final = round(sale * (1 + tax / 100), 2)
    q = f"A {item} costs {_fmt_money(price)} and is on sale for {off}% off." + (
        f" Sales tax is {tax}%." if tax else "") + " What's the final price?"
    lines = [f"1. Discount: {off}% of {_fmt_money(price)} = {_fmt_money(price * off / 100)}",
             f"2. Sale price: {_fmt_money(price)} − {_fmt_money(price * off / 100)} = {_fmt_money(sale)}"]
    if tax:
        lines.append(f"3. Tax: {tax}% of {_fmt_money(sale)} = {_fmt_money(sale * tax / 100)}")
        lines.append(f"4. Final price: {_fmt_money(sale)} + {_fmt_money(sale * tax / 100)} = **{_fmt_money(final)}**")
    ans = "Let's work it out step by step:\n\n" + "\n".join(lines)
    if tax:
        ans += (f"\n\nShortcut: multiply once by (1 − {off / 100:g}) × (1 + {tax / 100:g}) = {(1 - off / 100) * (1 + tax / 100):.4f}, "
                f"which gives the same {_fmt_money(final)}.")
    else:
        ans += f"\n\nSo you pay **{_fmt_money(final)}**, saving {_fmt_money(price - sale)}."
    return q, ans, [("Is that the same as taking the tax first and then the discount?",
                     "Yes. Percent changes multiply, and multiplication is commutative, so the order doesn't matter: "
                     f"{_fmt_money(price)} × {1 + tax / 100:g} × {1 - off / 100:g} gives the same {_fmt_money(final)} (up to rounding of cents).")]


def math_interest(rng):
    p = rng.choice([1000, 2500, 5000, 10000, 20000])
    r = rng.choice([2, 3, 3.5, 4, 5, 6, 7])
    n = rng.choice([3, 5, 8, 10, 15, 20])
    amt = p * (1 + r / 100) ** n
    q = pick(rng, [f"If I invest ${p:,} at {r}% interest compounded annually, how much will I have after {n} years?",
                   f"compound interest: principal {p}, rate {r}% per year, {n} years. final amount?",
                   f"My bank offers {r}% a year, compounded yearly. I'm putting in ${p:,}. What will it be worth in {n} years, and how much of that is interest?"])
    rows = "\n".join(f"| {y} | {_fmt_money(p * (1 + r / 100) ** y)} |" for y in range(1, n + 1)
                     if n <= 10 or y % 5 == 0 or y <= 2)
    ans = D(f"""
        Use the compound interest formula:

        A = P × (1 + r)^n

        where P = {p:,} (principal), r = {r / 100:g} (the annual rate as a decimal) and n = {n} (years).

        A = {p:,} × (1 + {r / 100:g})^{n} = {p:,} × {(1 + r / 100) ** n:.4f} ≈ **{_fmt_money(amt)}**

        Of that, {_fmt_money(amt - p)} is interest. Here's how the balance grows:

        | Year | Balance |
        |------|---------|
        """) + "\n" + rows + (
        f"\n\nFor comparison, simple interest (no compounding) would give only {_fmt_money(p * (1 + r / 100 * n))}. "
        "The difference is the \"interest on interest\" effect, which grows the longer the money stays invested.")
    return q, ans, [("How long would it take to double my money at that rate?",
                     f"A quick estimate is the Rule of 72: 72 / {r:g} ≈ {72 / r:.1f} years. The exact answer is "
                     f"ln(2) / ln(1 + {r / 100:g}) ≈ {0.693147 / __import__('math').log(1 + r / 100):.1f} years, so the rule of thumb is very close.")]


def math_derivative(rng):
    deg = rng.randint(2, 4)
    coeffs = {e: rng.choice([-5, -3, -2, -1, 1, 2, 3, 4, 6, 7]) for e in range(deg, -1, -1) if e == deg or rng.random() < 0.7}

    def term(c, e, first):
        sign = ("-" if c < 0 else "") if first else (" - " if c < 0 else " + ")
        a = abs(c)
        if e == 0:
            return f"{sign}{a}"
        cs = "" if a == 1 else str(a)
        return f"{sign}{cs}x" + (f"^{e}" if e > 1 else "")
    exps = sorted(coeffs, reverse=True)
    f = "".join(term(coeffs[e], e, i == 0) for i, e in enumerate(exps))
    dexps = [e for e in exps if e > 0]
    df = "".join(term(coeffs[e] * e, e - 1, i == 0) for i, e in enumerate(dexps)) or "0"
    steps = "\n".join(f"- d/dx [{term(coeffs[e], e, True)}] = {coeffs[e]} × {e}x^{e - 1} = {term(coeffs[e] * e, e - 1, True)}"
                      if e > 0 else f"- d/dx [{coeffs[e]}] = 0 (the derivative of a constant is zero)" for e in exps)
    x0 = rng.randint(-2, 3)
    val = sum(coeffs[e] * e * x0 ** (e - 1) for e in dexps)
    q = pick(rng, [f"What is the derivative of f(x) = {f}?", f"differentiate {f}",
                   f"Find f'(x) for f(x) = {f} and evaluate it at x = {x0}."])
    ans = ("Apply the power rule, d/dx [a·x^n] = n·a·x^(n−1), to each term separately:\n\n" + steps +
           f"\n\nPutting it together:\n\n**f'(x) = {df}**\n\nAt x = {x0}, f'({x0}) = {val}, which is the slope of the tangent line to the curve at that point.")
    return q, ans, [("And what's the second derivative?",
                     "Differentiate f'(x) once more with the same rule: f''(x) = " +
                     ("".join(term(coeffs[e] * e * (e - 1), e - 2, i == 0) for i, e in enumerate([e for e in exps if e > 1])) or "0") +
                     ". The second derivative tells you about concavity: where it's positive the curve bends upward, where it's negative it bends downward.")]


def math_dice(rng):
    k = rng.randint(2, 12)
    combos = [(a, b) for a in range(1, 7) for b in range(1, 7) if a + b == k]
    from fractions import Fraction
    fr = Fraction(len(combos), 36)
    q = pick(rng, [f"If I roll two fair dice, what's the probability that the sum is {k}?",
                   f"probability of rolling a total of {k} with 2d6?"])
    ans = (f"There are 6 × 6 = 36 equally likely outcomes when rolling two dice. The ones that sum to {k} are:\n\n"
           + ", ".join(f"({a}, {b})" for a, b in combos) +
           f"\n\nThat's {len(combos)} outcome{'s' if len(combos) != 1 else ''}, so the probability is {len(combos)}/36"
           + (f" = {fr.numerator}/{fr.denominator}" if fr.denominator != 36 else "") + f" ≈ {len(combos) / 36:.1%}."
           + ("\n\n7 is the most likely sum because it has the most combinations: every value on the first die can be matched by exactly one value on the second." if k == 7 else ""))
    return q, ans, [("What about getting that sum at least once in three rolls?",
                     f"Use the complement: the chance of *not* getting it in one roll is {36 - len(combos)}/36, so the chance of missing three times in a row is "
                     f"({36 - len(combos)}/36)^3 ≈ {((36 - len(combos)) / 36) ** 3:.3f}. The probability of getting it at least once is therefore 1 − {((36 - len(combos)) / 36) ** 3:.3f} ≈ {1 - ((36 - len(combos)) / 36) ** 3:.1%}.")]


def math_gcd(rng):
    g = rng.choice([2, 3, 4, 6, 7, 8, 9, 12, 14, 15])
    a, b = g * rng.randint(5, 40), g * rng.randint(3, 30)
    if a < b:
        a, b = b, a
    steps, x, y = [], a, b
    while y:
        steps.append(f"{x} = {x // y} × {y} + {x % y}")
        x, y = y, x % y
    import math
    gg = math.gcd(a, b)
    q = pick(rng, [f"Find the GCD and LCM of {a} and {b}.", f"gcd({a}, {b})? show euclid's algorithm",
                   f"What's the greatest common divisor of {a} and {b}?"])
    ans = ("Use the Euclidean algorithm: repeatedly divide and keep the remainder.\n\n" + bullets(steps) +
           f"\n\nThe last non-zero remainder is **{gg}**, so gcd({a}, {b}) = {gg}.\n\n"
           f"The least common multiple follows from lcm(a, b) = a × b / gcd(a, b) = {a} × {b} / {gg} = **{a * b // gg}**.")
    return q, ans, [("Why does the Euclidean algorithm work?",
                     f"Any number that divides both {a} and {b} also divides {a} − k×{b} for any k, and in particular the remainder {a % b}. "
                     "So the pair (a, b) and the pair (b, a mod b) have exactly the same common divisors. Each step keeps the GCD the same while the numbers shrink, and when the remainder hits 0 the GCD is simply the last non-zero number.")]


def math_quadratic(rng):
    r1, r2 = rng.randint(-9, 9), rng.randint(-9, 9)
    b, c = -(r1 + r2), r1 * r2
    bs = "" if b == 0 else (f" + {b}x" if b > 0 else f" - {-b}x")
    bs = bs.replace(" 1x", " x")
    cs = "" if c == 0 else (f" + {c}" if c > 0 else f" - {-c}")
    eq = f"x^2{bs}{cs} = 0"
    disc = b * b - 4 * c
    q = pick(rng, [f"Solve {eq}", f"How do I solve the quadratic equation {eq}?", f"find the roots of {eq}"])

    def fac(r):
        return "x" if r == 0 else (f"(x - {r})" if r > 0 else f"(x + {-r})")
    ans = D(f"""
        We can use the quadratic formula x = (−b ± √(b² − 4ac)) / 2a with a = 1, b = {b}, c = {c}.

        **Discriminant:** b² − 4ac = {b * b} − {4 * c} = {disc}{' (a perfect square, so the roots are whole numbers)' if disc > 0 else ''}

        x = ({-b} ± √{disc}) / 2 = ({-b} ± {int(disc ** 0.5)}) / 2
        """) + (f"\n\nSo **x = {max(r1, r2)}** or **x = {min(r1, r2)}**." if r1 != r2 else f"\n\nThe discriminant is 0, so there is one repeated root: **x = {r1}**.") + (
        f"\n\nYou can double-check by factoring: {eq.split(' =')[0]} = {fac(r1)}{fac(r2)}." if r1 != r2 else "")
    return q, ans, [("What does the discriminant tell you in general?",
                     "If b² − 4ac > 0 there are two distinct real roots (the parabola crosses the x-axis twice); if it equals 0 there's exactly one repeated root (the vertex touches the axis); and if it's negative there are no real roots, only a pair of complex conjugate ones.")]


def math_speed(rng):
    d1, v1 = rng.choice([60, 90, 120, 150]), rng.choice([40, 50, 60, 75])
    d2, v2 = rng.choice([30, 60, 80, 100]), rng.choice([30, 60, 80, 100])
    t = d1 / v1 + d2 / v2
    q = (f"A car drives {d1} km at {v1} km/h and then {d2} km at {v2} km/h. What is its average speed for the whole trip?"
         + maybe(rng, 0.4, " My friend says it's just the average of the two speeds but that seems wrong."))
    ans = D(f"""
        Average speed is total distance divided by total time, not the average of the speeds.

        - Time for the first part: {d1} / {v1} = {d1 / v1:.3f} h
        - Time for the second part: {d2} / {v2} = {d2 / v2:.3f} h
        - Total time: {t:.3f} h
        - Total distance: {d1 + d2} km

        Average speed = {d1 + d2} / {t:.3f} ≈ **{(d1 + d2) / t:.1f} km/h**.

        The simple average of the two speeds would be {(v1 + v2) / 2:g} km/h, which {'happens to match here' if abs((v1 + v2) / 2 - (d1 + d2) / t) < 0.05 else 'is wrong'} because the car spends different amounts of time at each speed; the slower segment takes longer, so it counts more.
        """)
    return q, ans, []


def math_prime(rng):
    n = rng.choice([91, 97, 119, 143, 187, 199, 221, 257, 323, 361, 389, 437, 499, 527, 561, 601, 713, 787, 899, 997])
    import math
    lim = int(math.isqrt(n))
    divs = [p for p in range(2, lim + 1) if n % p == 0]
    primes = [p for p in range(2, lim + 1) if all(p % d for d in range(2, p))]
    q = pick(rng, [f"Is {n} a prime number?", f"is {n} prime", f"How can I check whether {n} is prime without a calculator?"])
    ans = (f"To test whether {n} is prime, it's enough to try dividing by the primes up to √{n} ≈ {math.sqrt(n):.1f}, because if {n} had a factor larger than that, it would have to pair with one smaller than that.\n\n"
           f"The primes to check are: {', '.join(map(str, primes))}.\n\n")
    if divs:
        p = divs[0]
        ans += f"{n} ÷ {p} = {n // p} exactly, so **{n} is not prime**: {n} = {p} × {n // p}."
        if n == 561:
            ans += " Fun fact: 561 is the smallest Carmichael number, which fools some simple primality tests."
    else:
        ans += f"None of them divides {n} evenly, so **{n} is prime**."
    return q, ans, []


def math_system(rng):
    x, y = rng.randint(-6, 9), rng.randint(-6, 9)
    a1, b1, a2, b2 = rng.choice([1, 2, 3]), rng.choice([1, 2, -1]), rng.choice([1, 4, 5]), rng.choice([-1, -2, -3, 3])
    if a1 * b2 - a2 * b1 == 0:
        b2 += 1
    c1, c2 = a1 * x + b1 * y, a2 * x + b2 * y

    def eqn(a, b, c):
        bs = f"+ {b}y" if b > 0 else f"- {-b}y"
        bs = bs.replace(" 1y", " y")
        return f"{'' if a == 1 else a}x {bs} = {c}"
    det = a1 * b2 - a2 * b1
    q = f"Solve the system of equations:\n\n{eqn(a1, b1, c1)}\n{eqn(a2, b2, c2)}"
    ans = D(f"""
        I'll use elimination.

        Multiply the first equation by {a2} and the second by {a1} so the x terms match:

        - {a2} × ({eqn(a1, b1, c1)}) → {a1 * a2}x + {a2 * b1}y = {a2 * c1}
        - {a1} × ({eqn(a2, b2, c2)}) → {a1 * a2}x + {a1 * b2}y = {a1 * c2}

        Subtract the first from the second: ({a1 * b2} − {a2 * b1})y = {a1 * c2} − {a2 * c1}, i.e. {det}y = {a1 * c2 - a2 * c1}, so **y = {y}**.

        Substitute back into the first equation: {a1}x + {b1} × ({y}) = {c1} → {a1}x = {c1 - b1 * y} → **x = {x}**.

        Check in the second equation: {a2} × ({x}) + {b2} × ({y}) = {a2 * x + b2 * y} = {c2} ✓
        """)
    return q, ans, []


def math_convert(rng):
    c = rng.choice([-10, 0, 12, 18, 21, 25, 30, 37, 100, 180])
    km = rng.choice([5, 10, 21.1, 42.195, 100])
    if rng.random() < 0.5:
        q = pick(rng, [f"What is {c}°C in Fahrenheit?", f"convert {c} celsius to fahrenheit"])
        f = c * 9 / 5 + 32
        ans = f"°F = °C × 9/5 + 32 = {c} × 1.8 + 32 = **{f:g}°F**." + (
            " That's the boiling point of water at sea level." if c == 100 else
            " That's normal human body temperature." if c == 37 else
            " That's where water freezes." if c == 0 else "")
        fu = [("And the other way around?", f"Reverse the formula: °C = (°F − 32) × 5/9. For example, {f:g}°F → ({f:g} − 32) × 5/9 = {c}°C.")]
    else:
        q = pick(rng, [f"How many miles is {km} km?", f"{km} km in miles?"])
        ans = f"1 mile = 1.609344 km, so {km} km ÷ 1.609344 ≈ **{km / 1.609344:.2f} miles**." + (
            " That's the official marathon distance (26.2 miles)." if km == 42.195 else
            " That's a half marathon." if km == 21.1 else "")
        fu = []
    return q, ans, fu


MATH_GENS = [math_linear, math_discount, math_interest, math_derivative, math_dice, math_gcd, math_quadratic,
             math_speed, math_prime, math_system, math_convert]


def gen_math(rng, multi):
    g = pick(rng, MATH_GENS)
    q, a, fus = g(rng)
    if rng.random() < 0.5:
        a += "\n\n" + pick(rng, ["If anything in these steps is unclear, tell me which line and I'll explain it differently.",
                                  "A good habit with problems like this is to estimate the answer roughly first; if the exact result is far from your estimate, re-check the arithmetic.",
                                  "Try a similar problem on your own with different numbers, and I'm happy to check your working."])
    turns = [(dress_prompt(rng, with_context(rng, "math", q, p=0.6, k_max=2), preamble_p=0.2, closer_p=0.35), a)]
    if multi:
        fus = list(fus)
        # a second, related problem of the same kind, asked by reference to the first
        q2, a2, _ = g(rng)
        fus.append((pick(rng, ["Great. Can you do another one like that? ", "Let me try a similar one: ",
                               "ok now this one using the same method: "]) + q2, a2))
        fus.append((pick(rng, THANKS_HUMAN), pick(rng, THANKS_GPT)))
        turns.extend(fus[:rng.randint(1, 3)])
    return turns


# --------------------------------------------------------------------------------------------
# Science and history (fact banks)
# --------------------------------------------------------------------------------------------

SCIENCE = [
    dict(topic="photosynthesis", q="how photosynthesis works",
         facts=["Photosynthesis is the process plants, algae and some bacteria use to turn light energy into chemical energy stored in sugar.",
                "It takes place mainly in the chloroplasts of leaf cells, which contain the green pigment chlorophyll.",
                "The overall reaction combines six molecules of carbon dioxide and six of water to make one molecule of glucose and six molecules of oxygen: 6CO₂ + 6H₂O → C₆H₁₂O₆ + 6O₂.",
                "In the light-dependent reactions, chlorophyll absorbs mostly red and blue light, splits water and releases oxygen as a by-product while producing the energy carriers ATP and NADPH.",
                "In the Calvin cycle, the enzyme RuBisCO fixes carbon dioxide from the air, and ATP and NADPH are used to build it into sugars.",
                "Nearly all the oxygen in the atmosphere and almost all the energy in food chains ultimately come from photosynthesis."],
         eli5="Think of a leaf as a tiny solar-powered kitchen: sunlight is the stove, water and air are the ingredients, and sugar is the meal the plant cooks for itself, with oxygen left over as the steam."),
    dict(topic="black holes", q="what a black hole is",
         facts=["A black hole is a region of space where gravity is so strong that nothing, not even light, can escape once it crosses the boundary called the event horizon.",
                "Stellar black holes form when a massive star, typically more than about 20 times the mass of the Sun, runs out of fuel and its core collapses.",
                "Supermassive black holes with millions or billions of solar masses sit at the centres of most large galaxies, including Sagittarius A* in the Milky Way.",
                "Black holes themselves emit no light, but matter falling in heats up in an accretion disk and can outshine entire galaxies.",
                "In 2019 the Event Horizon Telescope published the first image of a black hole's shadow, in the galaxy M87.",
                "Stephen Hawking predicted that black holes slowly lose energy through quantum effects near the horizon, now called Hawking radiation."],
         eli5="Imagine a drain in a bathtub so strong that even a flashlight beam pointed away from it would get pulled back in."),
    dict(topic="DNA replication", q="how DNA copies itself",
         facts=["DNA is a double helix of two strands held together by base pairs: adenine with thymine, and guanine with cytosine.",
                "Before a cell divides, the enzyme helicase unzips the helix, separating the two strands at a replication fork.",
                "Each strand then serves as a template, and DNA polymerase adds matching nucleotides to build a new partner strand.",
                "Because polymerase can only build in one direction, one strand is made continuously and the other in short pieces called Okazaki fragments, which ligase later joins.",
                "The result is semi-conservative: each new DNA molecule contains one old strand and one new one.",
                "Proofreading by polymerase keeps the error rate extremely low, roughly one mistake per billion bases copied."],
         eli5="It's like unzipping a zipper and then building a new matching half onto each side, so you end up with two complete zippers."),
    dict(topic="plate tectonics", q="how plate tectonics works",
         facts=["Earth's outer shell, the lithosphere, is broken into about a dozen large plates and many smaller ones.",
                "The plates float on the hotter, slowly flowing mantle beneath them and move a few centimetres per year, about as fast as fingernails grow.",
                "At divergent boundaries, like the Mid-Atlantic Ridge, plates pull apart and new crust forms from rising magma.",
                "At convergent boundaries one plate may sink beneath another in a subduction zone, creating deep trenches and volcanoes such as those in the Andes and Japan.",
                "Where plates slide past each other, as along California's San Andreas Fault, stress builds up and is released in earthquakes.",
                "The theory grew out of Alfred Wegener's idea of continental drift in 1912 and was confirmed in the 1960s by evidence from seafloor magnetism."],
         eli5="Picture the Earth's surface as a cracked eggshell whose pieces slowly drift around on warm, gooey pudding underneath."),
    dict(topic="vaccines", q="how vaccines work",
         facts=["Vaccines train the immune system to recognise a pathogen without the person having to get sick first.",
                "They contain or produce an antigen, a harmless piece or version of the virus or bacterium, such as an inactivated virus, a protein subunit or mRNA instructions for a protein.",
                "The immune system responds by making antibodies and by activating T cells that target the antigen.",
                "Crucially, it also forms memory B and T cells, which can mount a much faster and stronger response if the real pathogen shows up later.",
                "When enough people are immune, the pathogen struggles to spread, which also protects people who can't be vaccinated; this is called herd immunity.",
                "Some vaccines need booster doses because immune memory fades over time or because the pathogen changes."],
         eli5="A vaccine is like showing the body's security guards a 'wanted' poster, so they recognise the troublemaker immediately if it ever turns up."),
    dict(topic="the greenhouse effect", q="what the greenhouse effect is",
         facts=["The Sun's energy reaches Earth mostly as visible light, which warms the surface.",
                "The warm surface radiates energy back out as infrared radiation.",
                "Greenhouse gases such as water vapour, carbon dioxide, methane and nitrous oxide absorb some of that infrared radiation and re-emit it in all directions, including back toward the ground.",
                "Without any greenhouse effect, Earth's average surface temperature would be about −18 °C instead of roughly 15 °C.",
                "Burning fossil fuels has raised atmospheric CO₂ from about 280 parts per million before the industrial era to over 420 ppm today, strengthening the effect.",
                "The extra trapped heat has warmed the planet by about 1.2 °C since the late 1800s, driving sea-level rise, more intense heatwaves and shifts in rainfall."],
         eli5="It works like a blanket: the blanket doesn't make heat, but it keeps more of your own warmth from escaping, and a thicker blanket keeps you warmer."),
    dict(topic="entropy", q="what entropy means",
         facts=["In thermodynamics, entropy measures how spread out energy is, or, in statistical terms, how many microscopic arrangements correspond to the same overall state.",
                "The second law of thermodynamics says that the total entropy of an isolated system never decreases over time.",
                "That's why heat flows from hot objects to cold ones and not the other way around by itself.",
                "Local decreases in entropy are possible, like water freezing in a freezer or a living cell building complex molecules, but only by increasing entropy elsewhere by at least as much.",
                "Ludwig Boltzmann connected entropy to probability with the formula S = k log W, which is engraved on his tombstone in Vienna.",
                "In information theory, Claude Shannon defined a closely related quantity that measures uncertainty in a message."],
         eli5="If you shake a box of sorted Lego bricks, they get mixed up, because there are vastly more messy arrangements than tidy ones."),
    dict(topic="the immune system", q="how the immune system fights infections",
         facts=["The immune system has two main branches: the fast, general innate system and the slower, highly specific adaptive system.",
                "Innate defences include skin, mucus, inflammation and white blood cells like neutrophils and macrophages that engulf invaders.",
                "The adaptive system uses B cells, which make antibodies, and T cells, which kill infected cells or coordinate the response.",
                "Each B or T cell recognises one specific molecular shape, and the body keeps millions of variants ready so that some will match almost any pathogen.",
                "After an infection, memory cells remain for years, which is why you usually get diseases like chickenpox only once.",
                "Sometimes the system misfires, attacking harmless substances in allergies or the body's own tissue in autoimmune diseases."],
         eli5="The innate system is like a castle's walls and guards who attack anyone suspicious, while the adaptive system is a team of specialists who study the enemy and remember it for next time."),
    dict(topic="how neurons communicate", q="how neurons send signals",
         facts=["Neurons are cells specialised for sending electrical and chemical signals.",
                "A neuron receives input through branching dendrites and sends output along a long fibre called the axon.",
                "When the combined input pushes the cell past a threshold, it fires an action potential, a brief electrical spike that travels down the axon.",
                "The spike is carried by ions: sodium rushes into the cell and then potassium flows out, resetting the voltage.",
                "At the end of the axon, the signal crosses a tiny gap called a synapse by releasing chemical messengers called neurotransmitters, such as dopamine, serotonin and glutamate.",
                "The human brain has roughly 86 billion neurons and on the order of 100 trillion synapses, and learning works largely by strengthening or weakening these connections."],
         eli5="A neuron is like a person in a long chain passing on a whisper: if enough neighbours whisper loudly enough, it passes the message on."),
    dict(topic="tides", q="what causes ocean tides",
         facts=["Tides are caused mainly by the Moon's gravity, with a smaller contribution from the Sun.",
                "The Moon pulls slightly harder on the side of Earth facing it than on Earth's centre, and harder on the centre than on the far side, stretching the oceans into two bulges.",
                "As Earth rotates through these two bulges, most coastlines see two high tides and two low tides roughly every 24 hours and 50 minutes.",
                "When the Sun, Moon and Earth line up at new and full moon, their effects add up to produce larger spring tides.",
                "When the Sun and Moon are at right angles, at the quarter moons, the effects partly cancel and give smaller neap tides.",
                "Local geography can amplify tides enormously; the Bay of Fundy in Canada has tidal ranges of up to 16 metres."],
         eli5="The Moon gently tugs the oceans toward it like a magnet pulling on a water balloon, making it bulge."),
    dict(topic="rainbows", q="why rainbows form",
         facts=["A rainbow appears when sunlight shines into raindrops while the Sun is behind you.",
                "Light slows down and bends (refracts) as it enters a droplet, reflects off the back of the drop, and bends again on the way out.",
                "Different wavelengths bend by slightly different amounts, a property called dispersion, so white light spreads into its colours.",
                "Red light exits at about 42 degrees from the direction opposite the Sun and violet at about 40 degrees, which is why the bow is a circle of that angular size.",
                "A fainter secondary rainbow with reversed colours sometimes appears outside the first, produced by light reflecting twice inside each drop.",
                "Every observer sees their own rainbow, formed by a different set of raindrops."],
         eli5="Each raindrop acts like a tiny prism that splits white sunlight into its hidden colours."),
    dict(topic="quantum entanglement", q="what quantum entanglement is",
         facts=["Entanglement is a quantum link between particles such that their properties can only be described together, not individually.",
                "If two entangled photons are measured, their results are correlated, for example always opposite polarisations, no matter how far apart they are.",
                "Before measurement, neither particle has a definite value; the outcome of each individual measurement is random.",
                "Entanglement cannot be used to send messages faster than light, because the individual results look random until the two sides compare notes through an ordinary channel.",
                "Experiments testing Bell's inequalities, recognised by the 2022 Nobel Prize in Physics, showed that these correlations can't be explained by hidden pre-set values.",
                "Entanglement is a key resource in quantum computing, quantum cryptography and quantum teleportation."],
         eli5="It's a bit like having two magic coins that always land on opposite sides, even if you flip them on different continents, except nobody decided in advance which would be heads."),
]

HISTORY = [
    dict(topic="the fall of the Western Roman Empire",
         facts=["The Western Roman Empire is traditionally said to have fallen in 476 CE, when the Germanic leader Odoacer deposed the boy emperor Romulus Augustulus.",
                "Its decline was gradual and had many causes, including political instability, with dozens of emperors in the third century alone.",
                "Economic problems, such as heavy taxation, currency debasement and disrupted trade, weakened the state.",
                "Pressure from migrating peoples like the Goths, Vandals and Huns grew, and Rome increasingly relied on foreign soldiers.",
                "The empire had been split administratively, and the wealthier Eastern half, later called the Byzantine Empire, survived until 1453.",
                "Rome itself was sacked by the Visigoths in 410 and by the Vandals in 455, shattering its image of invulnerability."]),
    dict(topic="the French Revolution",
         facts=["The French Revolution began in 1789, with the storming of the Bastille on 14 July becoming its symbol.",
                "France was nearly bankrupt after costly wars, including its support of the American Revolution, and bread prices had soared after poor harvests.",
                "Enlightenment ideas about natural rights and popular sovereignty challenged the absolute monarchy and the privileges of nobles and clergy.",
                "The Declaration of the Rights of Man and of the Citizen in August 1789 proclaimed liberty and equality before the law.",
                "The revolution radicalised: King Louis XVI was executed in 1793, and the Reign of Terror under Robespierre saw thousands guillotined.",
                "It ended with Napoleon Bonaparte's coup in 1799, but its ideas about citizenship, secular government and the metric system spread across Europe."]),
    dict(topic="the Industrial Revolution",
         facts=["The Industrial Revolution began in Britain in the mid-18th century and spread to Europe and North America in the 19th.",
                "Key inventions included the spinning jenny, the water frame and James Watt's improved steam engine of the 1770s.",
                "Britain had abundant coal and iron, capital from trade, colonial markets and a relatively stable political system.",
                "Factories replaced home-based production, and millions moved from the countryside to fast-growing cities like Manchester.",
                "Working conditions were often harsh, with long hours and child labour, which eventually led to labour unions and factory laws.",
                "Railways, beginning with the Stockton and Darlington line in 1825, transformed travel and trade."]),
    dict(topic="the Meiji Restoration",
         facts=["The Meiji Restoration of 1868 returned political power in Japan from the Tokugawa shogunate to the emperor.",
                "It was triggered in part by the arrival of US Commodore Matthew Perry's 'black ships' in 1853, which forced Japan to open to foreign trade.",
                "The new government abolished the feudal domains and the samurai class's privileges.",
                "Japan rapidly adopted Western technology, building railways, factories and a modern army and navy.",
                "A constitution modelled partly on Prussia's was introduced in 1889.",
                "Within a few decades Japan had become an industrial and military power, defeating China in 1895 and Russia in 1905."]),
    dict(topic="the printing press",
         facts=["Johannes Gutenberg developed a movable-type printing press in Mainz around 1440.",
                "His system combined metal type cast in reusable moulds, an oil-based ink and a press adapted from wine presses.",
                "The Gutenberg Bible, completed around 1455, is the most famous early printed book.",
                "By 1500, printing presses were operating in more than 200 European cities and had produced millions of books.",
                "Cheaper books boosted literacy and allowed ideas to spread quickly, which helped fuel the Protestant Reformation and the Scientific Revolution.",
                "Movable type had existed earlier in China and Korea, but the Latin alphabet's small number of letters made it especially practical in Europe."]),
    dict(topic="the Apollo 11 Moon landing",
         facts=["Apollo 11 launched on 16 July 1969 from Kennedy Space Center aboard a Saturn V rocket.",
                "The crew were Neil Armstrong, Buzz Aldrin and Michael Collins, who stayed in lunar orbit in the command module Columbia.",
                "The lunar module Eagle landed in the Sea of Tranquility on 20 July 1969 with less than a minute of fuel margin before the abort limit.",
                "Armstrong's first words on the surface were 'That's one small step for [a] man, one giant leap for mankind.'",
                "The astronauts spent about two and a half hours outside, collected 21.5 kg of lunar samples and set up experiments.",
                "The mission fulfilled President Kennedy's 1961 goal and was watched by an estimated 650 million people."]),
    dict(topic="the Silk Road",
         facts=["The Silk Road was a network of trade routes linking China with Central Asia, the Middle East and Europe from around the 2nd century BCE.",
                "Besides silk, merchants traded spices, horses, glass, paper, precious metals and countless other goods.",
                "Few traders travelled the whole way; goods usually passed through many hands in relay.",
                "Ideas travelled too: Buddhism spread from India into China, and technologies such as papermaking moved west.",
                "Cities such as Samarkand, Bukhara and Kashgar grew rich as trading hubs.",
                "Diseases also spread along the routes, most likely including the Black Death in the 14th century."]),
    dict(topic="the Black Death",
         facts=["The Black Death was a bubonic plague pandemic that struck Europe between 1347 and 1351.",
                "It was caused by the bacterium Yersinia pestis, spread by fleas on rats and, in its pneumonic form, directly between people.",
                "It probably killed between a third and a half of Europe's population, tens of millions of people.",
                "The labour shortage that followed raised wages for surviving workers and weakened the feudal system.",
                "Some communities blamed outsiders, and there were terrible massacres of Jewish communities.",
                "Plague returned in waves for centuries, and the practice of quarantine, from the Italian for forty days, emerged in response."]),
    dict(topic="the Cold War",
         facts=["The Cold War was a geopolitical rivalry between the United States and the Soviet Union from roughly 1947 to 1991.",
                "It was 'cold' because the two superpowers never fought each other directly, partly because of the threat of nuclear war.",
                "Instead they competed through alliances such as NATO and the Warsaw Pact, proxy wars in Korea, Vietnam and Afghanistan, and an arms race.",
                "The Cuban Missile Crisis of 1962 brought the world closer to nuclear war than at any other time.",
                "The space race, from Sputnik in 1957 to the Moon landing in 1969, was another arena of competition.",
                "The Berlin Wall fell in 1989 and the Soviet Union dissolved in December 1991, ending the Cold War."]),
    dict(topic="the Renaissance",
         facts=["The Renaissance was a cultural movement that began in Italy in the 14th century and spread across Europe until around the 17th century.",
                "It revived interest in classical Greek and Roman texts, art and ideas, an approach known as humanism.",
                "Wealthy patrons such as the Medici family in Florence funded artists, architects and scholars.",
                "Artists like Leonardo da Vinci, Michelangelo and Raphael developed linear perspective and realistic anatomy.",
                "Brunelleschi's dome for Florence Cathedral was an engineering marvel of the age.",
                "The printing press spread Renaissance ideas quickly, laying groundwork for the Scientific Revolution."]),
]

SCI_PROMPTS = ["Can you explain {q}?", "Explain {q} like I'm 10 years old.", "What is {t}?",
               "I never really understood {q}. Could you walk me through it?",
               "Give me a detailed explanation of {q} and why it matters.", "{t} - quick summary?",
               "My daughter asked me about {t} and I realised I couldn't explain it. Can you help me explain {q} in a way a kid would understand?"]
HIST_PROMPTS = ["What caused {t}?", "Give me an overview of {t}.", "Why was {t} important?",
                "I'm writing an essay about {t}. Can you give me the key facts and a few angles I could take?",
                "Tell me about {t} in a few paragraphs.", "what should I know about {t}"]


def fact_answer(rng, facts, lo=2, hi=None, eli5=None, paragraphs=True):
    hi = hi or len(facts)
    n = rng.randint(lo, hi)
    chosen = facts[:2] + sorted(sample(rng, facts[2:], max(0, n - 2)), key=facts.index) if n > 2 else facts[:n]
    if eli5:
        chosen = [eli5] + chosen
    if paragraphs and len(chosen) >= 4:
        mid = len(chosen) // 2
        return " ".join(chosen[:mid]) + "\n\n" + " ".join(chosen[mid:])
    if not paragraphs:
        return bullets(chosen)
    return " ".join(chosen)


ARTICLE_ASKS = ["Write a blog post of about 500 words about {t} for a general audience.",
                "Write an informative article about {t} with headings.",
                "I need a detailed explainer on {t} for our company newsletter. Structure it with an intro, a few sections and a conclusion.",
                "Write a short essay on {t}."]


def long_article(rng, topic, facts, eli5=None):
    """A long-form answer (~350-650 tokens) built from every fact about a topic."""
    title = pick(rng, [f"Understanding {topic}", f"A Beginner's Guide to {topic[0].upper() + topic[1:]}",
                       f"{topic[0].upper() + topic[1:]}: What You Need to Know", f"Why {topic[0].upper() + topic[1:]} Still Matters"])
    intro = pick(rng, [f"Few subjects reward a closer look as much as {topic}. It comes up in classrooms, documentaries and everyday conversation, yet most of us only remember a sentence or two about it.",
                       f"Most people have heard of {topic}, but far fewer could explain it in any detail. This article walks through the essentials, step by step, without assuming a specialist background.",
                       f"If you have ever wondered about {topic}, you are in good company. Here is a clear overview of what it is, how it works, and why it matters."])
    half = max(2, len(facts) // 2)
    secs = [("The basics", facts[:2]), ("How it works" if eli5 else "What happened", facts[2:half + 1]),
            ("Why it matters", facts[half + 1:])]
    body = []
    for head, fs in secs:
        if not fs:
            continue
        extra = pick(rng, ["", " This point is easy to overlook, but the rest of the story depends on it.",
                           " It's worth pausing on this, because it explains much of what follows.",
                           " Keep this in mind for the next section."])
        body.append(f"## {head}\n\n" + " ".join(fs) + extra)
    if eli5:
        body.insert(1, "## An everyday analogy\n\n" + eli5 + " Like every analogy it is imperfect, but it captures the core idea well enough to build on.")
    concl = pick(rng, [f"## Conclusion\n\n{topic[0].upper() + topic[1:]} is a good reminder that the world is more interconnected than it first appears. Understanding the basics makes the headlines, and the history books, much easier to follow.",
                       f"## Final thoughts\n\nThe short version: {lowerfirst(facts[0])} But as we've seen, the details are where it gets interesting, and where most misconceptions come from. If this sparked your curiosity, a good next step is a documentary or an introductory book on the subject."])
    if rng.random() < 0.5:
        body.append("## Questions worth exploring next\n\n" + bullets([
            f"What do experts still disagree about when it comes to {topic}?",
            "Which popular claims about it turn out to be myths, and where did they come from?",
            "How has our understanding changed over the last fifty years, and what new evidence drove that change?"]))
    if rng.random() < 0.6:
        body.append("## Key takeaways\n\n" + bullets([f.split(",")[0].rstrip(".") + "." for f in facts[:5]]))
    return f"# {title}\n\n{intro}\n\n" + "\n\n".join(body) + f"\n\n{concl}"


def gen_science(rng, multi):
    s = pick(rng, SCIENCE)
    if rng.random() < 0.25:
        human = dress_prompt(rng, pick(rng, ARTICLE_ASKS).format(t=s["topic"]), preamble_p=0.3)
        return [(human, long_article(rng, s["topic"], s["facts"], s["eli5"]))] + (
            [("Can you suggest a catchy headline and a two-sentence teaser for it?",
              f"Headline: \"{s['topic'][0].upper() + s['topic'][1:]}, Explained in Five Minutes\"\n\nTeaser: {s['facts'][0]} Here's how it works and why it matters more than you might think.")] if multi else [])
    p = pick(rng, SCI_PROMPTS)
    human = dress_prompt(rng, with_context(rng, "science", p.format(q=s["q"], t=s["topic"]), p=0.7), preamble_p=0.3)
    kid = "10" in p or "kid" in p
    style = rng.random()
    if style < 0.1:
        ans = s["facts"][0]
    elif style < 0.5:
        ans = fact_answer(rng, s["facts"], 3, eli5=s["eli5"] if kid else None)
    else:
        ans = (fact_answer(rng, s["facts"], 2, 3, eli5=s["eli5"] if kid else None) + "\n\nKey points:\n\n"
               + bullets(s["facts"][2:]) + maybe(rng, 0.5, "\n\nIn short: " + s["eli5"]))
    turns = [(human, ans)]
    if multi:
        fus = [(pick(rng, ["Can you simplify that even more?", "That's a bit too technical, can you dumb it down?"]),
                s["eli5"] + " " + s["facts"][0]),
               (pick(rng, ["What's one surprising fact about it?", "Tell me something most people don't know about this."]),
                s["facts"][-1]),
               ("Can you turn your explanation into 3 quiz questions with answers?",
                "\n\n".join(f"**Q{i}.** True or false: {f}\n**A{i}.** True." for i, f in enumerate(sample(rng, s["facts"], 3), 1))
                + "\n\nTo make the quiz harder, you could rewrite one detail in each statement to make it false and ask students to correct it."),
               (pick(rng, THANKS_HUMAN), pick(rng, THANKS_GPT))]
        rng.shuffle(fus)
        turns.extend(fus[:rng.randint(1, 4)])
    return turns


def gen_history(rng, multi):
    h = pick(rng, HISTORY)
    if rng.random() < 0.25:
        human = dress_prompt(rng, pick(rng, ARTICLE_ASKS).format(t=h["topic"]), preamble_p=0.3)
        return [(human, long_article(rng, h["topic"], h["facts"]))] + (
            [("Could you add a list of sources I could cite?",
              "I can't verify specific page numbers, so please check these yourself, but good starting points are: a recent general history of the period from a university press, the relevant entries in Encyclopaedia Britannica or the Oxford Reference series, and primary sources such as contemporary letters, newspapers or official documents, many of which are digitised by national libraries. Your university library's subject guide for the period is also an excellent place to find vetted sources.")] if multi else [])
    p = pick(rng, HIST_PROMPTS)
    human = dress_prompt(rng, with_context(rng, "history", p.format(t=h["topic"]), p=0.7), preamble_p=0.3)
    if "essay" in p:
        ans = ("Here are the key facts:\n\n" + bullets(h["facts"]) +
               "\n\nPossible angles for your essay:\n\n" + bullets([
                   f"**Causes vs. triggers:** distinguish the long-term conditions behind {h['topic']} from the immediate events that set it off.",
                   "**Winners and losers:** who gained and who lost, and how did ordinary people experience it compared to elites?",
                   "**Legacy:** which consequences are still visible today, and which popular beliefs about it are myths?"]))
    else:
        ans = fact_answer(rng, h["facts"], 2 if rng.random() < 0.15 else 4)
        if rng.random() < 0.4:
            ans += f"\n\nHistorians still debate how much weight to give each factor, but most agree that {h['topic']} can't be explained by a single cause."
    turns = [(human, ans)]
    if multi:
        other = pick(rng, [x for x in HISTORY if x is not h])
        fus = [(pick(rng, ["What were the long-term consequences?", "Why does it still matter today?"]),
                h["facts"][-1] + " " + h["facts"][-2]),
               (f"How does that compare with {other['topic']}?",
                f"They're quite different episodes. To recap the first: {h['facts'][0]} By contrast, {lowerfirst(other['facts'][0])} "
                f"{other['facts'][1]} What they share is that both reshaped the societies involved for generations, and both are often simplified in popular memory."),
               ("Can you put the main dates in a timeline?",
                "Here's a compact timeline based on what I mentioned:\n\n" + bullets([f for f in h["facts"] if any(ch.isdigit() for ch in f)])),
               (pick(rng, THANKS_HUMAN), pick(rng, THANKS_GPT))]
        rng.shuffle(fus)
        turns.extend(fus[:rng.randint(1, 4)])
    return turns


# --------------------------------------------------------------------------------------------
# Cooking, travel, advice, trivia
# --------------------------------------------------------------------------------------------

RECIPES = [
    dict(dish="shakshuka", serves=2,
         ing=[("olive oil", 2, "tbsp"), ("onion, diced", 1, ""), ("red bell pepper, sliced", 1, ""), ("garlic cloves, minced", 3, ""),
              ("ground cumin", 1, "tsp"), ("smoked paprika", 1, "tsp"), ("canned crushed tomatoes", 400, "g"), ("eggs", 4, ""),
              ("feta, crumbled", 50, "g"), ("fresh parsley or coriander", 1, "handful")],
         steps=["Heat the oil in a wide pan over medium heat and cook the onion and pepper for 8-10 minutes until soft.",
                "Add the garlic, cumin and paprika and stir for one minute until fragrant.",
                "Pour in the tomatoes, season with salt and pepper, and simmer for 10 minutes until the sauce thickens.",
                "Make four wells in the sauce, crack an egg into each, cover and cook for 5-7 minutes until the whites are set but the yolks are still runny.",
                "Scatter over the feta and herbs and serve straight from the pan with crusty bread."],
         tip="If the sauce tastes sharp, a pinch of sugar balances the acidity of the tomatoes."),
    dict(dish="classic pancakes", serves=4,
         ing=[("plain flour", 200, "g"), ("baking powder", 2, "tsp"), ("sugar", 1, "tbsp"), ("salt", 1, "pinch"),
              ("milk", 300, "ml"), ("eggs", 1, ""), ("melted butter", 30, "g")],
         steps=["Whisk the flour, baking powder, sugar and salt in a bowl.",
                "In another bowl whisk the milk, egg and melted butter.",
                "Pour the wet ingredients into the dry and stir just until combined; a few lumps are fine and overmixing makes pancakes tough.",
                "Let the batter rest for 5 minutes while you heat a lightly oiled pan over medium heat.",
                "Pour about 60 ml of batter per pancake and cook until bubbles appear on the surface, about 2 minutes, then flip and cook 1 more minute."],
         tip="Keep finished pancakes warm in a 90 °C oven while you cook the rest."),
    dict(dish="vegetable stir-fry", serves=2,
         ing=[("neutral oil", 2, "tbsp"), ("broccoli florets", 200, "g"), ("carrot, thinly sliced", 1, ""), ("snow peas", 100, "g"),
              ("garlic cloves, minced", 2, ""), ("fresh ginger, grated", 1, "tbsp"), ("soy sauce", 3, "tbsp"),
              ("rice vinegar", 1, "tbsp"), ("sesame oil", 1, "tsp"), ("cornstarch", 1, "tsp"), ("cooked rice", 2, "cups")],
         steps=["Mix the soy sauce, vinegar, sesame oil and cornstarch with 3 tablespoons of water to make the sauce.",
                "Heat the oil in a wok or large pan over high heat until it shimmers.",
                "Stir-fry the carrot and broccoli for 3 minutes, then add the snow peas for 1 more minute.",
                "Push the vegetables aside, add the garlic and ginger to the empty spot and cook for 30 seconds.",
                "Pour in the sauce and toss everything until glossy, about 1 minute. Serve over rice."],
         tip="Get all the vegetables chopped before you turn on the heat; stir-frying moves too fast to prep as you go."),
    dict(dish="lentil soup", serves=4,
         ing=[("olive oil", 2, "tbsp"), ("onion, chopped", 1, ""), ("carrots, diced", 2, ""), ("celery stalks, diced", 2, ""),
              ("garlic cloves", 3, ""), ("red lentils, rinsed", 250, "g"), ("vegetable stock", 1.2, "l"),
              ("ground cumin", 2, "tsp"), ("lemon, juiced", 1, "")],
         steps=["Soften the onion, carrot and celery in the oil for about 8 minutes.",
                "Add the garlic and cumin and cook for another minute.",
                "Add the lentils and stock, bring to a boil, then simmer for 20-25 minutes until the lentils fall apart.",
                "Blend partially if you like a creamier texture, season with salt and pepper, and stir in the lemon juice just before serving."],
         tip="The soup thickens as it sits; loosen leftovers with a splash of water when reheating."),
    dict(dish="spaghetti carbonara", serves=2,
         ing=[("spaghetti", 200, "g"), ("guanciale or pancetta", 100, "g"), ("egg yolks", 3, ""), ("whole egg", 1, ""),
              ("Pecorino Romano, finely grated", 50, "g"), ("black pepper", 1, "tsp")],
         steps=["Boil the spaghetti in well-salted water until al dente.",
                "Meanwhile, cook the guanciale in a dry pan over medium heat until crisp and the fat has rendered, then turn off the heat.",
                "Whisk the yolks, whole egg, Pecorino and plenty of black pepper in a bowl.",
                "Reserve a cup of pasta water, drain the pasta and toss it in the pan with the guanciale.",
                "Off the heat, add the egg mixture and a splash of pasta water and toss quickly until a silky sauce forms. Serve immediately."],
         tip="The pan must be off the heat when the eggs go in, otherwise you get scrambled eggs instead of a sauce. Traditional carbonara has no cream."),
    dict(dish="banana bread", serves=8,
         ing=[("very ripe bananas", 3, ""), ("melted butter", 75, "g"), ("brown sugar", 120, "g"), ("egg", 1, ""),
              ("vanilla extract", 1, "tsp"), ("baking soda", 1, "tsp"), ("salt", 1, "pinch"), ("plain flour", 190, "g")],
         steps=["Preheat the oven to 175 °C and line a loaf tin.",
                "Mash the bananas in a large bowl, then stir in the melted butter.",
                "Mix in the sugar, egg and vanilla, then sprinkle over the baking soda and salt.",
                "Fold in the flour until no dry streaks remain.",
                "Pour into the tin and bake for 55-65 minutes, until a skewer comes out clean. Cool for 10 minutes before slicing."],
         tip="The blacker the bananas, the sweeter and more flavourful the bread."),
    dict(dish="chicken curry", serves=4,
         ing=[("chicken thighs, boneless, cubed", 600, "g"), ("neutral oil", 2, "tbsp"), ("onions, finely chopped", 2, ""),
              ("garlic cloves", 4, ""), ("ginger", 1, "thumb-sized piece"), ("garam masala", 2, "tsp"), ("turmeric", 1, "tsp"),
              ("chilli powder", 1, "tsp"), ("canned tomatoes", 400, "g"), ("coconut milk", 200, "ml")],
         steps=["Fry the onions in the oil over medium heat for 12-15 minutes until deep golden; this is where most of the flavour comes from.",
                "Add the garlic and ginger, cook 1 minute, then stir in the spices for 30 seconds.",
                "Add the tomatoes and cook until the oil starts to separate, about 8 minutes.",
                "Add the chicken and stir to coat, then pour in the coconut milk and simmer for 20 minutes until the chicken is cooked through.",
                "Season with salt, finish with fresh coriander and serve with rice or naan."],
         tip="Thighs stay juicier than breast in a simmered curry."),
    dict(dish="guacamole", serves=4,
         ing=[("ripe avocados", 3, ""), ("lime, juiced", 1, ""), ("red onion, finely diced", 0.5, ""), ("tomato, seeded and diced", 1, ""),
              ("jalapeño, minced", 1, ""), ("fresh coriander, chopped", 2, "tbsp"), ("salt", 0.5, "tsp")],
         steps=["Halve the avocados, remove the stones and scoop the flesh into a bowl.",
                "Mash with a fork, leaving some texture.",
                "Stir in the lime juice and salt straight away to slow browning.",
                "Fold in the onion, tomato, jalapeño and coriander. Taste and adjust salt and lime."],
         tip="Press plastic wrap directly onto the surface to keep leftovers green."),
]

FRIDGE = ["eggs", "spinach", "half an onion", "a can of chickpeas", "rice", "some cheddar", "leftover roast chicken",
          "tomatoes", "a zucchini", "garlic", "pasta", "a bag of frozen peas", "tortillas", "Greek yogurt", "potatoes"]


def _scale(q, f):
    v = q * f
    return f"{v:g}" if v == int(v) else f"{v:.2f}".rstrip("0").rstrip(".")


def recipe_text(r, factor=1.0):
    ing = "\n".join(f"- {_scale(q, factor)}{(' ' + u) if u else ''} {n}" for n, q, u in r["ing"])
    return f"**Ingredients (serves {_scale(r['serves'], factor)}):**\n\n{ing}\n\n**Method:**\n\n{bullets(r['steps'], '1.')}"


def gen_cooking(rng, multi):
    r = pick(rng, RECIPES)
    kind = rng.random()
    if kind < 0.5:
        human = dress_prompt(rng, with_context(rng, "cooking", "", p=0.65) + pick(rng, [f"How do I make {r['dish']}?", f"Can you give me a recipe for {r['dish']}?",
                                             f"{r['dish']} recipe please", f"I want to cook {r['dish']} tonight for the first time. What do I need and how do I do it?"]))
        ans = f"Here's a reliable {r['dish']} recipe.\n\n" + recipe_text(r) + f"\n\n**Tip:** {r['tip']}"
    elif kind < 0.75:
        n = rng.choice([1, 3, 6, 10, 12])
        f = n / r["serves"]
        human = dress_prompt(rng, f"I have a {r['dish']} recipe that serves {r['serves']}, but I need it for {n} people. Can you scale the ingredients?\n\n"
                             + "\n".join(f"- {q:g}{(' ' + u) if u else ''} {nm}" for nm, q, u in r["ing"]))
        ans = (f"Sure! To go from {r['serves']} to {n} servings, multiply everything by {n}/{r['serves']} = {f:.3g}:\n\n"
               + "\n".join(f"- {_scale(q, f)}{(' ' + u) if u else ''} {nm}" for nm, q, u in r["ing"])
               + "\n\nRound things like eggs to the nearest whole number. Cooking times for stovetop dishes stay about the same, but a bigger pot may take longer to come to a simmer"
               + (", and for baking a larger batch is best split across several tins rather than one deep one." if r["dish"] == "banana bread" else "."))
    else:
        items = sample(rng, FRIDGE, rng.randint(3, 6))
        human = dress_prompt(rng, f"I have {', '.join(items[:-1])} and {items[-1]} in the fridge. What can I cook with that?")
        ideas = []
        if "eggs" in items:
            ideas.append("**Frittata or omelette:** whisk the eggs with a little cheese, fold in whatever vegetables you have, and cook gently in an oven-safe pan.")
        if "rice" in items or "leftover roast chicken" in items:
            ideas.append("**Fried rice:** day-old rice fried hot with garlic, peas or chopped vegetables, any leftover meat, and a splash of soy sauce.")
        if "a can of chickpeas" in items:
            ideas.append("**Chickpea and spinach stew:** soften onion and garlic, add chickpeas, tomatoes and spinach, and simmer 15 minutes with cumin and paprika.")
        if "pasta" in items:
            ideas.append("**Quick pasta:** toss pasta with sautéed garlic, vegetables, a bit of the pasta water and grated cheese.")
        if "tortillas" in items:
            ideas.append("**Quesadillas:** fill tortillas with cheese and anything else on the list, then crisp them in a dry pan.")
        if "potatoes" in items:
            ideas.append("**Potato hash:** dice and pan-fry the potatoes until crisp, add onion and vegetables, and top with a fried egg if you have one.")
        ideas.append("**Soup:** almost any combination of vegetables can become soup with onion, garlic, stock and 20 minutes of simmering.")
        ans = "Here are a few ideas based on what you have:\n\n" + "\n".join(f"{i}. {x}" for i, x in enumerate(ideas, 1)) + \
              "\n\nIf you tell me how much time you have, I can turn one of these into a step-by-step recipe."
    turns = [(human, ans)]
    if multi:
        fus = [(pick(rng, ["Can I make it vegetarian?", "Any way to make this vegan?"]),
                f"Yes. For {r['dish']}, swap any meat for a hearty alternative such as mushrooms, chickpeas or firm tofu, use vegetable stock, and check cheeses for animal rennet. "
                "For a vegan version, replace eggs and dairy with plant-based alternatives; the flavour will change a bit, so season generously."),
               ("How long does it keep in the fridge?",
                "Most cooked dishes like this keep 3-4 days in an airtight container in the fridge. Cool leftovers within two hours of cooking and reheat until piping hot. "
                + r["tip"]),
               (pick(rng, ["What should I serve with it?", "any side dish suggestions?"]),
                pick(rng, ["A crisp green salad with a sharp vinaigrette balances rich dishes nicely.",
                           "Crusty bread, steamed rice or roasted vegetables all work well.",
                           "Something fresh and acidic, like a cucumber and tomato salad, cuts through the richness."])),
               (pick(rng, ["I made it and it turned out great!", "Made this last night, my family loved it."]),
                "That's wonderful to hear! Next time you could experiment with the spices or add a seasonal vegetable to make it your own.")]
        if kind < 0.5:
            fus.append(("Can you convert the recipe for 6 people?",
                        f"Here's the recipe scaled from {r['serves']} to 6 servings (×{6 / r['serves']:.3g}):\n\n" + recipe_text(r, 6 / r["serves"]).split("**Method:**")[0].strip()
                        + "\n\nThe method stays the same; just use a larger pan so the ingredients aren't crowded."))
        rng.shuffle(fus)
        turns.extend(fus[:rng.randint(1, 4)])
    return turns


DESTINATIONS = [
    dict(city="Lisbon", country="Portugal", sights=["Alfama's winding streets and the São Jorge Castle", "the Belém Tower and the Jerónimos Monastery", "a ride on historic tram 28", "the LX Factory for shops and cafés", "sunset at the Miradouro da Senhora do Monte", "a day trip to the palaces of Sintra", "the Gulbenkian Museum", "the beaches at Cascais"],
         food=["pastéis de nata, ideally warm from Pastéis de Belém", "grilled sardines in summer", "bacalhau (salt cod) dishes", "a bifana pork sandwich"],
         tips=["The city is very hilly and paved with slippery limestone, so bring shoes with good grip.", "A Navegante card or contactless payment covers metro, trams and buses.", "Dinner often starts late, around 8-9 pm."],
         best="spring (April-June) and early autumn (September-October)"),
    dict(city="Kyoto", country="Japan", sights=["the thousands of torii gates at Fushimi Inari, best early in the morning", "Kinkaku-ji, the Golden Pavilion", "the Arashiyama bamboo grove and Tenryū-ji", "the Gion district in the evening", "Kiyomizu-dera and the lanes of Higashiyama", "Nishiki Market", "the Philosopher's Path", "a day trip to Nara's deer park and Tōdai-ji"],
         food=["kaiseki, a multi-course seasonal meal", "yudōfu (simmered tofu)", "matcha sweets in Uji", "obanzai home-style dishes"],
         tips=["A prepaid IC card like ICOCA works on buses and trains.", "Popular temples get very crowded by 10 am; start early.", "Don't photograph geiko and maiko without permission in Gion's private lanes."],
         best="late March-April for cherry blossoms and November for autumn colours"),
    dict(city="Mexico City", country="Mexico", sights=["the Zócalo and the Metropolitan Cathedral", "the National Museum of Anthropology", "the Frida Kahlo Museum in Coyoacán", "the pyramids of Teotihuacan", "a boat ride on the canals of Xochimilco", "Chapultepec Park and Castle", "the Palacio de Bellas Artes murals", "the cafés of Roma and Condesa"],
         food=["tacos al pastor from a street stand", "chilaquiles for breakfast", "mole poblano", "churros with hot chocolate"],
         tips=["The city is at 2,240 m, so take it easy on your first day.", "Use registered taxis or ride-hailing apps rather than hailing cabs on the street.", "Many museums are closed on Mondays."],
         best="the dry season, November to April"),
    dict(city="Edinburgh", country="Scotland", sights=["Edinburgh Castle", "a walk down the Royal Mile", "the climb up Arthur's Seat", "the Scottish National Museum", "Calton Hill at sunset", "Dean Village", "the Palace of Holyroodhouse", "a day trip to the Highlands or Stirling"],
         food=["a full Scottish breakfast", "haggis, neeps and tatties", "cullen skink (smoked haddock soup)", "a whisky tasting"],
         tips=["Pack layers and a waterproof jacket whatever the forecast says.", "In August the Fringe festival fills the city, so book accommodation months ahead.", "The Old Town is very walkable, but it's steep in places."],
         best="May to September, with August being the busiest"),
    dict(city="Cape Town", country="South Africa", sights=["Table Mountain by cable car or hiking trail", "the penguins at Boulders Beach", "the Cape of Good Hope", "Robben Island", "the V&A Waterfront", "the colourful houses of Bo-Kaap", "Kirstenbosch Botanical Garden", "a day in the Stellenbosch winelands"],
         food=["bobotie", "a braai (barbecue)", "Cape Malay curries", "fresh seafood in Kalk Bay"],
         tips=["The wind can close the Table Mountain cable car; have a backup plan.", "Avoid walking alone at night in quiet areas and use ride-hailing apps.", "Book Robben Island tickets in advance."],
         best="October to April, the warm and dry season"),
    dict(city="Istanbul", country="Türkiye", sights=["Hagia Sophia", "the Blue Mosque", "Topkapı Palace", "the Grand Bazaar and the Spice Bazaar", "a Bosphorus ferry ride", "the Basilica Cistern", "the Galata Tower and Karaköy", "the Asian side in Kadıköy"],
         food=["simit for breakfast", "balık ekmek (fish sandwich) by the water", "meze and rakı", "baklava and Turkish tea"],
         tips=["An Istanbulkart works on trams, ferries and the metro.", "Dress modestly and cover your head (women) when visiting mosques.", "Bargaining is expected in the bazaars."],
         best="April-May and September-November"),
    dict(city="Reykjavík", country="Iceland", sights=["Hallgrímskirkja church", "the Golden Circle (Þingvellir, Geysir and Gullfoss)", "the Blue Lagoon or the Sky Lagoon", "the Harpa concert hall", "whale watching from the old harbour", "the south coast waterfalls Seljalandsfoss and Skógafoss", "the black sand beach at Reynisfjara", "northern lights tours in winter"],
         food=["lamb soup", "fresh Arctic char", "skyr", "a famous hot dog from Bæjarins Beztu"],
         tips=["Weather changes fast; check road.is and safetravel.is before driving.", "Never turn your back on the waves at Reynisfjara.", "Tap water is excellent, so skip bottled water."],
         best="June-August for midnight sun, September-March for the northern lights"),
    dict(city="Buenos Aires", country="Argentina", sights=["the Recoleta Cemetery", "La Boca and Caminito", "the San Telmo Sunday market", "a tango show or milonga", "Teatro Colón", "Palermo's parks and bars", "Plaza de Mayo and the Casa Rosada", "a day trip to Tigre's river delta"],
         food=["a steak at a parrilla", "empanadas", "dulce de leche anything", "a glass of Malbec"],
         tips=["Dinner rarely starts before 9 pm.", "Carry some cash; exchange rates for cards and cash can differ.", "Use the SUBE card for buses and the subway."],
         best="spring (September-November) and autumn (March-May)"),
]


def gen_travel(rng, multi):
    d = pick(rng, DESTINATIONS)
    kind = rng.random()
    if kind < 0.55:
        days = rng.choice([2, 3, 3, 4, 5, 7])
        who = pick(rng, ["", "We're a couple in our thirties. ", "I'm travelling with two kids (6 and 9). ",
                         "Solo trip, moderate budget. ", "We love food and walking but hate crowds. "])
        human = dress_prompt(rng, who + with_context(rng, "travel", f"Can you plan a {days}-day itinerary for {d['city']}?", p=0.7, k_max=4))
        sights = d["sights"][:]
        rng.shuffle(sights)
        food = d["food"][:]
        per = max(1, min(3, len(sights) // days + 1))
        lines = []
        for day in range(1, days + 1):
            todays = sights[(day - 1) * per:(day - 1) * per + per] or [pick(rng, ["a slow morning and revisiting a favourite neighbourhood", "shopping for souvenirs and a long lunch", "a free day to rest or revisit a highlight"])]
            if rng.random() < 0.5:
                lines.append(f"**Day {day}:** " + "; then ".join(todays) + f". For dinner, try {food[(day - 1) % len(food)]}.")
            else:
                lines.append(f"**Day {day}**\n- Morning: {todays[0]}.\n- Afternoon: " + ("; ".join(todays[1:]) or pick(rng, ["wander a nearby neighbourhood without a plan", "a long lunch and a rest", "a café break and some people-watching"]))
                             + f".\n- Evening: dinner featuring {food[(day - 1) % len(food)]}" + pick(rng, [", then an early night.", ", followed by a stroll.", "; book ahead on weekends."]))
        ans = (f"Here's a {days}-day plan for {d['city']}, {d['country']}, balancing the big sights with some downtime:\n\n"
               + "\n\n".join(lines) + "\n\n**Practical tips:**\n\n" + bullets(d["tips"]) +
               f"\n\nThe best time to visit is {d['best']}.")
    elif kind < 0.8:
        human = dress_prompt(rng, pick(rng, [f"What should I know before visiting {d['city']}?", f"first time in {d['city']}, any tips?",
                                             f"I'm going to {d['city']} next month. What are the must-sees and what should I eat?"]))
        ans = (f"{d['city']} is a great choice. A few things to know:\n\n**Don't miss:**\n\n" + bullets(d["sights"][:rng.randint(3, 6)]) +
               "\n\n**Eat:**\n\n" + bullets(d["food"]) + "\n\n**Good to know:**\n\n" + bullets(d["tips"]))
    else:
        human = dress_prompt(rng, pick(rng, [f"When is the best time to visit {d['city']}?", f"best month to go to {d['city']}?"]))
        ans = f"The best time to visit {d['city']} is generally {d['best']}. " + d["tips"][0]
    turns = [(human, ans)]
    if multi:
        other = pick(rng, [x for x in DESTINATIONS if x is not d])
        fus = [(f"What if it rains during the trip?",
                f"{d['city']} has good rainy-day options: museums and covered markets are the obvious ones, and " + lowerfirst(d["sights"][-1]) + " works in most weather. "
                "Keep the outdoor highlights flexible and swap days around based on the forecast."),
               (f"Is it worth adding a few days in {other['city']} on the same trip?",
                f"It depends on your time. {other['city']} is very different from {d['city']}; its highlights include {other['sights'][0]} and {other['sights'][1]}. "
                f"If you have fewer than five days in total, I'd stay focused on {d['city']}. With a week or more, combining the two can work well."),
               ("What's a realistic daily budget?",
                "Roughly: budget travellers can get by on hostels, public transport and street food; mid-range travellers should plan for a private room, a sit-down meal or two each day and a couple of paid attractions. "
                f"Prices in {d['city']} vary a lot by season, so check accommodation costs for your exact dates first, since that's usually the biggest item."),
               (pick(rng, THANKS_HUMAN), pick(rng, THANKS_GPT))]
        rng.shuffle(fus)
        turns.extend(fus[:rng.randint(1, 3)])
    return turns


ADVICE = [
    dict(topic="sleeping better", asks=["I keep waking up tired even after 8 hours. How can I sleep better?", "tips for better sleep?", "I have trouble falling asleep most nights, I lie awake for an hour or more."],
         tips=["Keep a consistent wake-up time every day, including weekends; it anchors your body clock more than bedtime does.",
               "Get bright daylight in the first hour after waking, ideally outdoors.",
               "Avoid caffeine after about 1-2 pm, since its half-life is around five to six hours.",
               "Keep the bedroom cool (around 17-19 °C), dark and quiet.",
               "Stop screens or at least dim them in the last hour before bed, and keep work out of the bedroom.",
               "If you can't fall asleep after about 20 minutes, get up and do something calm in dim light until you feel sleepy.",
               "Alcohol may help you fall asleep but fragments sleep later in the night.",
               "If you snore loudly or wake up gasping, talk to a doctor about sleep apnea."]),
    dict(topic="preparing for a job interview", asks=["I have a job interview on Monday. How should I prepare?", "how to prepare for a software engineering interview", "I get really nervous in interviews. Any advice?"],
         tips=["Research the company: its products, recent news and what the team you'd join works on.",
               "Prepare 5-6 stories from your experience using the STAR format (Situation, Task, Action, Result) that you can adapt to many questions.",
               "Practise answering out loud, not just in your head; a mock interview with a friend helps a lot.",
               "Prepare two or three thoughtful questions to ask them, e.g. what success looks like in the first six months.",
               "Re-read the job description and map each requirement to something you've done.",
               "Plan the logistics the day before: route, outfit, or for remote interviews, camera, microphone and a quiet room.",
               "It's fine to pause and think before answering; a structured answer beats a fast one.",
               "Send a short thank-you note afterwards mentioning something specific from the conversation."]),
    dict(topic="learning a new language", asks=["What's the most effective way to learn a new language as an adult?", "I want to learn Spanish in a year. Where do I start?", "I've been using a language app for months but I still can't hold a conversation."],
         tips=["Learn the most frequent 1,000-2,000 words first; they cover most everyday speech.",
               "Use spaced-repetition flashcards (for example Anki) for 15-20 minutes a day.",
               "Start speaking early, even badly; online tutors or language exchanges make this affordable.",
               "Consume lots of content slightly above your level: podcasts for learners, graded readers, TV with subtitles in the target language.",
               "Study a little every day rather than a lot once a week.",
               "Learn phrases and sentence patterns, not just isolated words.",
               "Set concrete goals, like ordering a meal or having a 10-minute conversation by a certain date.",
               "Accept mistakes as part of the process; native speakers usually appreciate the effort."]),
    dict(topic="managing stress at work", asks=["I'm completely overwhelmed at work lately. How do I cope?", "how do you deal with work stress", "My workload doubled after a colleague left and I feel burned out."],
         tips=["Write down everything on your plate; getting it out of your head reduces the mental load.",
               "Prioritise explicitly and share the list with your manager, asking what can wait or be dropped.",
               "Block focus time in your calendar and batch email and chat into set times.",
               "Take real breaks: a short walk away from the screen helps more than scrolling your phone.",
               "Protect sleep and exercise; they're the first things to go under stress and the most important for coping.",
               "Say no, or 'not now', to new requests when you're at capacity, and offer an alternative timeline.",
               "Talk to someone, whether a colleague, friend or professional; many employers offer free confidential counselling.",
               "If stress persists for weeks and affects your health, treat it seriously and consider speaking to a doctor."]),
    dict(topic="budgeting", asks=["How do I start budgeting? I never seem to have money left at the end of the month.", "simple budgeting method for a beginner?", "I just got my first full-time job. How should I manage my money?"],
         tips=["Track every expense for one month to see where the money actually goes.",
               "Try the 50/30/20 rule as a starting point: 50% needs, 30% wants, 20% savings and debt repayment.",
               "Automate savings by transferring money on payday, before you can spend it.",
               "Build an emergency fund covering 3-6 months of essential expenses.",
               "Pay off high-interest debt, like credit cards, before investing.",
               "Review subscriptions and cancel the ones you don't use.",
               "If your employer matches retirement contributions, contribute at least enough to get the full match.",
               "Give yourself a small amount of guilt-free spending money so the budget is sustainable."]),
    dict(topic="asking for a raise", asks=["How do I ask my boss for a raise?", "I think I'm underpaid. How do I bring it up without it being awkward?"],
         tips=["Research market rates for your role, level and location using salary surveys and sites like Levels.fyi or Glassdoor.",
               "Make a list of concrete achievements with numbers: revenue, time saved, projects delivered, people mentored.",
               "Ask for a dedicated meeting rather than bringing it up in passing.",
               "Time it well, for example after a successful project or a few months before the budget cycle.",
               "State a specific number or range, anchored slightly above what you'd accept.",
               "Keep it about your value, not personal needs like rent.",
               "If the answer is no, ask what you'd need to achieve to get there and agree on a timeline to revisit it."]),
    dict(topic="staying motivated to exercise", asks=["I always quit going to the gym after a few weeks. How do I stay consistent?", "how to make exercise a habit"],
         tips=["Start smaller than you think you need to: two 20-minute sessions a week you actually do beat five planned ones you skip.",
               "Schedule workouts like appointments.",
               "Pick activities you enjoy; consistency matters more than the 'optimal' program.",
               "Track your workouts so you can see progress.",
               "Find a workout partner or class for accountability.",
               "Lay out your clothes or pack your gym bag the night before to remove friction.",
               "Expect missed days and follow the 'never miss twice' rule."]),
    dict(topic="giving feedback to a colleague", asks=["How do I give critical feedback to a coworker without damaging the relationship?", "my teammate keeps missing deadlines and it affects me. how do I bring it up?"],
         tips=["Do it privately and soon after the issue, not weeks later.",
               "Describe specific behaviour and its impact rather than judging the person: 'The report arrived Thursday instead of Monday, so I had to delay the client update.'",
               "Ask for their perspective; there may be context you don't know about.",
               "Agree on a concrete next step together.",
               "Balance it over time with genuine positive feedback, but avoid the 'compliment sandwich', which people see through.",
               "Follow up and acknowledge improvement when you see it."]),
]


def gen_advice(rng, multi):
    a = pick(rng, ADVICE)
    human = dress_prompt(rng, with_context(rng, "advice", pick(rng, a["asks"]), p=0.65, k_max=4), preamble_p=0.2)
    n = rng.choice([4, 5, 6, 6, 7, 7, 8])
    tips = sample(rng, a["tips"], n)
    intro = pick(rng, [f"Here are some practical suggestions for {a['topic']}:",
                       "That's a really common problem, and the good news is that small changes help. A few ideas:",
                       "Some things that tend to work:", ""])
    if len(human) > 200 and rng.random() < 0.7:
        intro = (pick(rng, ["Thanks for the context, that helps a lot.", "That sounds genuinely hard, and you're not alone in it.",
                            "It's good that you're looking at this now rather than letting it build up."])
                 + f" Based on what you've described, here's what I'd focus on for {a['topic']}:")
    outro = pick(rng, ["", "Pick one or two of these to start with rather than everything at once.",
                       "Be patient with yourself; it takes a few weeks for new habits to stick.",
                       "If you share a bit more about your situation, I can tailor these suggestions."])
    ans = "\n\n".join(x for x in [intro, bullets(tips, "1." if rng.random() < 0.5 else "-"), outro] if x)
    turns = [(human, ans)]
    if multi:
        rest = [t for t in a["tips"] if t not in tips]
        fus = [(pick(rng, ["Which of those would you start with?", "if I could only do one thing from that list, what should it be?"]),
                f"I'd start with the first one: {lowerfirst(tips[0])} It has the biggest effect for the least effort, and once it becomes routine the others are easier to add."),
               ("I've already tried most of that. Anything else?",
                ("A few less obvious ideas:\n\n" + bullets(rest[:3])) if rest else
                "In that case it might be worth getting outside help: a coach, a mentor or a professional can look at your specific situation and spot things a general list can't."),
               (pick(rng, THANKS_HUMAN), pick(rng, THANKS_GPT))]
        rng.shuffle(fus)
        turns.extend(fus[:rng.randint(1, 3)])
    return turns


TRIVIA = [
    ("What is the capital of Australia?", "Canberra.", "Many people guess Sydney, but Canberra was purpose-built as a compromise between Sydney and Melbourne and became the capital in 1913."),
    ("How many bones are in the adult human body?", "206.", "Babies are born with around 270, but many fuse together during growth."),
    ("Who wrote 'One Hundred Years of Solitude'?", "Gabriel García Márquez.", "It was published in 1967 and is a landmark of magical realism."),
    ("What's the largest planet in our solar system?", "Jupiter.", "It's more than twice as massive as all the other planets combined."),
    ("What is the chemical symbol for gold?", "Au.", "It comes from the Latin word *aurum*."),
    ("Which element has atomic number 1?", "Hydrogen.", "It's also the most abundant element in the universe."),
    ("How long does light from the Sun take to reach Earth?", "About 8 minutes and 20 seconds.", "The Sun is roughly 150 million km away and light travels at about 300,000 km/s."),
    ("What is the longest river in the world?", "The Nile, at about 6,650 km, although some measurements put the Amazon slightly ahead.", "The answer depends on where you define each river's source."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci.", "He worked on it from around 1503 and it now hangs in the Louvre in Paris."),
    ("What year did the Berlin Wall fall?", "1989.", "The border opened on the night of 9 November 1989."),
    ("What is the smallest country in the world?", "Vatican City.", "It covers about 0.44 square kilometres."),
    ("How many time zones does Russia have?", "11.", "They stretch from Kaliningrad (UTC+2) to Kamchatka (UTC+12)."),
    ("What is the hardest natural substance?", "Diamond.", "It scores 10 on the Mohs hardness scale."),
    ("Which planet is known as the Red Planet?", "Mars.", "Its surface is rich in iron oxide, which gives it a rusty colour."),
    ("In what year did the Titanic sink?", "1912.", "It sank on 15 April 1912 on its maiden voyage after hitting an iceberg."),
    ("What is the boiling point of water at sea level in Fahrenheit?", "212°F.", "That's 100°C."),
    ("Who developed the theory of general relativity?", "Albert Einstein.", "He published it in 1915."),
    ("What's the most spoken language in the world by native speakers?", "Mandarin Chinese.", "Counting second-language speakers, English has the most total speakers."),
    ("How many players are on a soccer team on the field?", "11 per team, including the goalkeeper.", ""),
    ("What is the square root of 144?", "12.", ""),
    ("What gas do plants absorb from the air?", "Carbon dioxide (CO₂).", "They use it in photosynthesis and release oxygen."),
    ("Which ocean is the largest?", "The Pacific Ocean.", "It covers about a third of Earth's surface, more than all the land combined."),
    ("What is the currency of Japan?", "The yen (¥).", ""),
    ("Who was the first woman to win a Nobel Prize?", "Marie Curie.", "She won the Physics prize in 1903 and the Chemistry prize in 1911, the only person to win Nobels in two different sciences."),
    ("What is the tallest mountain in the world?", "Mount Everest, at 8,849 m above sea level.", "Measured from base to peak, Mauna Kea in Hawaii is taller, but most of it is underwater."),
    ("How many hearts does an octopus have?", "Three.", "Two pump blood through the gills and one through the rest of the body."),
    ("What does 'HTTP' stand for?", "HyperText Transfer Protocol.", ""),
    ("What's the speed of sound in air?", "About 343 m/s at 20 °C.", "It increases with temperature."),
    ("Which country has the most islands?", "Sweden, with over 267,000 islands.", "Norway and Finland are close behind, depending on how islands are counted."),
    ("What is the largest desert in the world?", "Antarctica.", "Deserts are defined by low precipitation, not heat; the largest hot desert is the Sahara."),
    ("Who composed the 'Moonlight Sonata'?", "Ludwig van Beethoven.", "It's his Piano Sonata No. 14, completed in 1801."),
    ("How many strings does a standard guitar have?", "Six.", ""),
    ("What is the freezing point of water in Kelvin?", "273.15 K.", ""),
    ("Which blood type is the universal donor?", "O negative.", "For plasma, it's the reverse: AB is the universal plasma donor."),
    ("what's the capital of canada", "Ottawa.", ""),
    ("Is a tomato a fruit or a vegetable?", "Botanically, a fruit: it develops from the flower and contains seeds. In cooking it's treated as a vegetable.", "A US Supreme Court case in 1893, Nix v. Hedden, ruled it a vegetable for tariff purposes."),
    ("What does DNA stand for?", "Deoxyribonucleic acid.", ""),
    ("Who was the first person in space?", "Yuri Gagarin, on 12 April 1961.", "His Vostok 1 flight lasted 108 minutes."),
    ("How many continents are there?", "Seven by the most common convention: Africa, Antarctica, Asia, Australia/Oceania, Europe, North America and South America.", "Some traditions combine the Americas or Europe and Asia, giving five or six."),
    ("What's the most abundant gas in Earth's atmosphere?", "Nitrogen, about 78%.", "Oxygen is about 21%, and argon most of the remaining 1%."),
]


def gen_trivia(rng, multi):
    batch = rng.random() < 0.2
    if batch:
        qs = sample(rng, TRIVIA, rng.randint(3, 6))
        human = "Quick quiz, answer these:\n\n" + bullets([q for q, _, _ in qs], "1.")
        ans = "\n".join(f"{i}. {a}" for i, (_, a, _) in enumerate(qs, 1))
        return [(human, ans)]
    q, a, more = pick(rng, TRIVIA)
    human = q if rng.random() < 0.7 else dress_prompt(rng, q)
    ans = a if (not more or rng.random() < 0.4) else f"{a} {more}"
    if len(ans.split()) < 3:                    # keep regular answers >= 4 tokens (edge cases are explicit)
        ans = f"{a} {more}" if more else f"The answer is {a[0].lower() + a[1:] if a[:1].isalpha() and not a[:2].istitle() else a}"
    turns = [(human, ans)]
    if multi:
        for q2, a2, m2 in sample(rng, [t for t in TRIVIA if t[0] != q], rng.randint(1, 3)):
            turns.append((pick(rng, ["And ", "Next one: ", "ok. ", ""]) + q2, a2 + ((" " + m2) if m2 and rng.random() < 0.5 else "")))
    return turns


# --------------------------------------------------------------------------------------------
# Writing and editing
# --------------------------------------------------------------------------------------------

EMAILS = [
    dict(ask="an email to my landlord about a broken heater that still hasn't been fixed after two weeks",
         subject="Heating still not working – repair needed", to="Mr. {last}",
         body=["I'm writing to follow up on the broken heater in my apartment, which I first reported on {date}.",
               "Two weeks later it still hasn't been repaired, and with night-time temperatures dropping the flat is becoming uncomfortably cold.",
               "Could you please arrange for a technician to visit this week? I'm available most evenings after 5 pm and can also make arrangements to let someone in during the day.",
               "I'd appreciate a reply by Friday confirming when the repair will take place."]),
    dict(ask="an email to my professor asking for a one-week extension on my term paper because I was sick",
         subject="Extension request for term paper", to="Professor {last}",
         body=["I hope you're well. I'm writing to ask whether it would be possible to get a one-week extension on the term paper due on {date}.",
               "I was ill with the flu for most of last week and wasn't able to work on it; I can provide a doctor's note if needed.",
               "I've completed my research and an outline, so with the extra week I'm confident I can submit work that reflects my best effort.",
               "Thank you for considering my request."]),
    dict(ask="a polite email declining a meeting invitation because I have a conflict, and suggesting another time",
         subject="Re: Project sync on Thursday", to="{first}",
         body=["Thanks for the invite to Thursday's project sync.",
               "Unfortunately I have a client call at the same time that I can't move.",
               "Would Friday morning or any time Monday afternoon work instead? If it's easier to keep Thursday, I'm happy to send my updates in writing beforehand so you have everything you need."]),
    dict(ask="a follow-up email after a job interview",
         subject="Thank you – {job} interview", to="{first}",
         body=["Thank you for taking the time to speak with me yesterday about the {job} role.",
               "I really enjoyed learning about the team's plans for the coming year, especially the project you described to modernise the reporting pipeline.",
               "Our conversation confirmed my enthusiasm for the position, and I believe my experience would let me contribute quickly.",
               "Please let me know if I can provide anything else. I look forward to hearing about next steps."]),
    dict(ask="an email to a company asking for a refund for a damaged product",
         subject="Refund request – order #{order}", to="Customer Service Team",
         body=["I recently received order #{order}, but unfortunately the item arrived damaged: the casing is cracked and it doesn't turn on.",
               "I've attached photos of the product and the packaging.",
               "I'd like to request a full refund to my original payment method. Please let me know if you need me to return the item and, if so, send a prepaid shipping label.",
               "Thank you for your help in resolving this quickly."]),
    dict(ask="an email introducing myself to my new team on my first day",
         subject="Hello from your new {job}!", to="team",
         body=["I'm excited to be joining the team today as the new {job}.",
               "Before this I spent four years at a mid-sized company in {city}, where I worked on everything from day-to-day operations to larger improvement projects.",
               "Over the next few weeks I'd love to grab a virtual coffee with each of you to learn about what you're working on and how I can help.",
               "Outside work, I'm into hiking and cooking, and always happy to swap restaurant recommendations."]),
    dict(ask="an email to my neighbour about their dog barking late at night",
         subject="A small favour about the evenings", to="{first}",
         body=["I hope you're doing well. I wanted to mention something in a friendly way before it becomes a bigger issue.",
               "Over the past couple of weeks your dog has been barking for long stretches late at night, often after 11 pm, and it's been making it hard for us to sleep.",
               "I know dogs can get anxious when they're alone, and I'm sure you'd want to know.",
               "Would you be open to chatting about it? Thanks for understanding."]),
]

PROOF_PARAS = [
    "Our team has spent the last quarter improving the onboarding process for new customers. We interviewed twenty users, identified the three steps where most people gave up, and redesigned each of them. Early results are encouraging: the share of users who finish setup has risen from 54 percent to 71 percent.",
    "The town's library will close for renovations from March until the end of summer. During this time, residents can borrow books from the temporary branch in the community centre. The renovated building will have a larger children's area, more study rooms and better accessibility for wheelchair users.",
    "I have always been fascinated by the way languages change over time. Words that were once considered slang often become part of everyday speech within a generation. Studying these changes tells us a great deal about the people who used them and the world they lived in.",
    "Remote work has changed how many companies think about office space. Some have reduced their offices to a few shared desks, while others have redesigned them as places for collaboration rather than individual work. Either way, it is clear that the traditional nine-to-five office is no longer the only model.",
    "Before you start the experiment, make sure that all the equipment has been calibrated. Record the room temperature and humidity, because both can affect the results. If any reading looks unusual, repeat the measurement and note it in your lab book.",
    "The novel follows a young woman who returns to her hometown after her father's death. As she sorts through his belongings, she discovers letters that reveal a side of him she never knew. The story is quiet and reflective, but it builds to a surprisingly emotional ending.",
    "Regular maintenance is the best way to extend the life of your bicycle. Clean and lubricate the chain every few hundred kilometres, check the tyre pressure weekly, and have the brakes inspected at least once a year. A well-maintained bike is safer, faster and more enjoyable to ride.",
    "Thank you for your application for the position of junior designer. We were impressed by your portfolio, especially the packaging work for the local bakery. We would like to invite you to a second interview next week, where you will meet the rest of the creative team.",
]

# (correct, wrong) pairs used to corrupt paragraphs for proofreading tasks
TYPOS = [("their", "there"), ("the", "teh"), ("received", "recieved"), ("because", "becuase"), ("which", "wich"),
         ("until", "untill"), ("been", "being"), ("its", "it's"), ("a lot", "alot"), ("separate", "seperate"),
         ("definitely", "definately"), ("than", "then"), ("weekly", "weekely"), ("results", "resluts"),
         ("process", "proccess"), ("calibrated", "callibrated"), ("surprisingly", "suprisingly"), ("whether", "wether"),
         ("interviewed", "interviwed"), ("temporary", "temperary"), ("accessibility", "accesibility"),
         ("equipment", "equiptment"), ("impressed", "impresed"), ("belongings", "belongins"), ("reflective", "reflectve")]


def corrupt(rng, text):
    import re
    changes = []
    out = text
    cands = [(c, w) for c, w in TYPOS if re.search(rf"\b{re.escape(c)}\b", out)]
    for c, w in sample(rng, cands, rng.randint(2, 4)):
        m = re.search(rf"\b{re.escape(c)}\b", out)
        if m:
            out = out[:m.start()] + w + out[m.end():]
            changes.append(f"\"{w}\" → \"{c}\"")
    # drop one comma or double a word
    if ", " in out and rng.random() < 0.5:
        i = out.index(", ")
        out = out[:i] + out[i + 1:]
        changes.append("added a missing comma")
    return out, changes


POEMS = {
    "the ocean": "The tide rolls in with silver hands,\nit writes its name across the sands,\nthen, patient as the turning moon,\nit takes it back by afternoon.",
    "autumn": "Maple leaves let go,\ncrimson boats on the cold creek,\nthe year drifting home.",
    "coffee": "Before the sun, before the news,\nbefore the day has made its claims,\nthere's steam that curls in quiet blues\nand warms my hands and knows my name.",
    "a city at night": "Neon hums on wet pavement,\nthe last bus sighs at the stop,\nten thousand windows keep\ntheir small gold secrets lit,\nwhile the city dreams with its eyes open.",
    "debugging code": "Line forty-two, I trusted you;\nyou swore your loop would terminate.\nNow print statements, one by two,\nconfess the truth: it's off by eight.",
    "friendship": "Not the loud days, but the ones\nwhen nothing needed to be said:\nyour coat beside mine on the chair,\ntwo cups of tea, the evening spread.",
    "the mountains": "Granite shoulders, snow for hair,\nthey've watched the valleys for an age;\nwe climb to borrow some of their\nslow patience, page by page.",
    "spring rain": "Soft rain on the roof,\nthe garden drinks and stretches,\ngreen wakes everywhere.",
}

FORMAL = [
    ("hey, can u send me the report asap? need it for the meeting", "Hi, could you please send me the report as soon as possible? I need it for the upcoming meeting. Thank you."),
    ("sorry i'm late with this, things have been crazy", "I apologise for the delay; it has been an unusually busy period."),
    ("we can't do that, it's way too expensive", "Unfortunately, we are unable to proceed with that option, as the cost exceeds our current budget."),
    ("just checking if you saw my last email??", "I wanted to follow up on my previous email in case it was missed."),
    ("the app is broken again and customers are mad", "The application is experiencing issues again, and we have received a number of customer complaints."),
    ("can we push the deadline? we're not gonna make it", "Would it be possible to extend the deadline? At the current pace, we are unlikely to meet the original date."),
    ("thx for the help yesterday, u saved me", "Thank you very much for your help yesterday; it made a real difference."),
    ("this plan is kinda confusing, can you explain it better", "I found parts of the plan difficult to follow. Could you clarify the main steps?"),
]

STORY = dict(
    hero=["a retired lighthouse keeper", "a twelve-year-old inventor", "a nervous new teacher", "a stray cat with one white paw",
          "a robot that repairs clocks", "a baker who can't taste sugar"],
    place=["a fishing village where the fog never lifts", "a space station orbiting Neptune", "a night market in Taipei",
           "a snowed-in mountain hotel", "a city where it hasn't rained in ten years"],
    problem=["finds a map hidden inside an old book", "receives a letter addressed to someone who died fifty years ago",
             "discovers that every clock in town has stopped at the same minute", "has to win a contest to save a friend's shop",
             "hears music coming from an empty room every night"],
    end=["learns that the answer was with them all along", "makes an unlikely friend", "chooses kindness over winning",
         "finally says what they'd been afraid to say", "leaves the place better than they found it"],
)


def gen_writing(rng, multi):
    kind = pick(rng, ["email", "email", "proofread", "proofread", "poem", "formal", "story", "outline"])
    turns = []
    if kind == "email":
        e = pick(rng, EMAILS)
        first, last = pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES)
        ctx = dict(first=pick(rng, FIRST_NAMES), last=pick(rng, LAST_NAMES), job=pick(rng, JOBS), city=pick(rng, CITIES),
                   date=pick(rng, ["March 3", "the 14th", "Monday the 9th", "October 21"]), order=rng.randint(100000, 999999))
        human = dress_prompt(rng, pick(rng, ["Write {a}.", "Can you help me write {a}?", "draft {a} pls",
                                             "I need to send {a}. Keep it polite but firm."]).format(a=e["ask"]), preamble_p=0.2)
        human = with_context(rng, "writing", human, p=0.5, k_max=3)
        greet = "Hi team," if e["to"] == "team" else f"Dear {e['to'].format(**ctx)}," if rng.random() < 0.6 else f"Hello {e['to'].format(**ctx)},"
        body = "\n\n".join(b.format(**ctx) for b in e["body"])
        email = f"Subject: {e['subject'].format(**ctx)}\n\n{greet}\n\n{body}\n\n{pick(rng, ['Best regards', 'Kind regards', 'Thanks', 'Sincerely'])},\n{first} {last}"
        ans = pick(rng, ["Here's a draft you can adapt:", "Sure, here's an email you could send:", ""]) + "\n\n" + email
        turns.append((human, ans.strip()))
        if multi:
            turns.append((pick(rng, ["Can you make it shorter?", "That's a bit long, can you cut it down?"]),
                          f"Here's a shorter version:\n\nSubject: {e['subject'].format(**ctx)}\n\n{greet}\n\n" + " ".join(b.format(**ctx) for b in e["body"][:2]) + f"\n\nThanks,\n{first}"))
            turns.append((pick(rng, ["Now make it a bit more friendly and less formal.", "can you make the tone warmer?"]),
                          f"Sure:\n\nHi {ctx['first']},\n\n" + e["body"][0].format(**ctx).replace("I'm writing to", "Just wanted to") +
                          " " + e["body"][-1].format(**ctx) + f"\n\nThanks so much!\n{first}"))
    elif kind == "proofread":
        n = rng.randint(1, 3)
        paras = sample(rng, PROOF_PARAS, n)
        bad, changes = [], []
        for p in paras:
            b, c = corrupt(rng, p)
            bad.append(b)
            changes.extend(c)
        human = with_context(rng, "writing", "", p=0.4, k_max=2) + pick(rng, ["Can you proofread this and fix any mistakes?", "Please check the grammar and spelling:",
                           "fix the typos in this text", "Could you correct this paragraph and tell me what you changed?"]) + "\n\n" + "\n\n".join(bad)
        ans = ("Here's the corrected text:\n\n" + "\n\n".join(paras) + "\n\nChanges I made:\n\n" + bullets(changes or ["no errors found; I only adjusted the punctuation slightly"]))
        turns.append((human, ans))
        if multi:
            turns.append(("Thanks. Can you also make it sound more engaging?",
                          "Here's a livelier version that keeps the same content:\n\n" +
                          "\n\n".join(p.replace("We would like", "We'd love").replace("I have always been", "I've always been")
                                      .replace("Regular maintenance is", "Want your bike to last? Regular maintenance is") for p in paras)
                          + "\n\nI shortened a few phrases, used contractions and added a hook at the start where it fit."))
    elif kind == "poem":
        theme = pick(rng, sorted(POEMS))
        human = dress_prompt(rng, pick(rng, [f"Write a short poem about {theme}.", f"poem about {theme}", f"Can you write me a few lines of poetry about {theme}? Something gentle."]),
                             preamble_p=0.15, closer_p=0.1)
        ans = POEMS[theme]
        if rng.random() < 0.4:
            ans = f"Here's a short poem about {theme}:\n\n{ans}"
        turns.append((human, ans))
        if multi:
            other = pick(rng, [t for t in sorted(POEMS) if t != theme])
            turns.append((f"Nice! Now one about {other}.", POEMS[other]))
            turns.append(("Which of the two do you like better?",
                          f"I'm fond of the one about {theme}: its images are more concrete, while the {other} poem leans more on mood. "
                          "But poems land differently for everyone; which one felt closer to what you had in mind?"))
    elif kind == "formal":
        pairs = sample(rng, FORMAL, rng.randint(1, 3))
        human = pick(rng, ["Rewrite this to sound more professional:", "Make this more formal:", "Can you rephrase this for an email to a client?"]) + "\n\n" + "\n".join(p[0] for p in pairs)
        ans = "\n\n".join(p[1] for p in pairs)
        if rng.random() < 0.5:
            ans = "Here's a more professional version:\n\n" + ans + "\n\nI replaced abbreviations with full words, softened direct statements, and added polite framing."
        turns.append((human, ans))
    elif kind == "story":
        h, pl, pr, en = (pick(rng, STORY[k]) for k in ("hero", "place", "problem", "end"))
        length = pick(rng, ["100-word", "short", "bedtime", "flash fiction"])
        human = dress_prompt(rng, f"Write a {length} story about {h} in {pl} who {pr}.", preamble_p=0.15)
        name = pick(rng, FIRST_NAMES)
        paras = [f"In {pl}, there lived {h} named {name}. Most days were the same: the same streets, the same faces, the same small routines that made life feel safe and a little too quiet.",
                 f"Then one evening, {name} {pr}. At first it seemed like a mistake, the kind of thing you notice and then forget. But {name} couldn't forget it.",
                 f"Over the next days {name} asked questions nobody else had thought to ask. Some people laughed, some shut their doors, and one old neighbour simply said, \"It's about time someone noticed.\"",
                 f"By the end, {name} {en}. The town looked the same as before, but {name} didn't, and that made all the difference."]
        if "100" in length:
            paras = [paras[0], paras[1], paras[3]]
        ans = "\n\n".join(paras)
        if rng.random() < 0.5:
            ans = f"**{pick(rng, ['The Quiet Minute', 'What the Fog Kept', 'Small Lights', 'The Letter', 'After the Last Bus'])}**\n\n" + ans
        turns.append((human, ans))
        if multi:
            turns.append((f"Can you continue the story? What happens to {name} next?",
                          f"A week later, {name} noticed something new: people had started to stop and talk in the street again. Word of what had happened spread, and soon others came with their own strange stories, hoping {name} could help.\n\n"
                          f"{name} didn't have all the answers, but had learned that asking the right question was often enough. And so, on a morning that looked like every other, a new adventure began."))
    else:  # outline
        topic = pick(rng, ["the benefits of remote work", "why cities should invest in bike lanes", "the history of video games",
                           "how social media affects teenagers", "renewable energy in developing countries", "the four-day work week"])
        human = dress_prompt(rng, pick(rng, [f"Create an outline for an essay on {topic}.", f"I need a blog post outline about {topic}",
                                             f"Help me structure a 1500-word article on {topic}."]))
        ans = D(f"""
            **Working title:** {topic[0].upper() + topic[1:]}: What the Evidence Says

            1. **Introduction**
               - Hook: a surprising statistic or short anecdote
               - Why the topic matters now
               - Thesis: a clear one-sentence position
            2. **Background**
               - Key definitions
               - Brief history and how we got here
            3. **Main argument 1: the strongest benefit or cause**
               - Evidence from research or data
               - A concrete example
            4. **Main argument 2: a second, distinct point**
               - Evidence
               - Example or case study
            5. **Counterarguments**
               - The best objection, stated fairly
               - Your response
            6. **Practical implications**
               - What readers, companies or policymakers could do
            7. **Conclusion**
               - Restate the thesis in new words
               - End with a forward-looking thought or call to action

            For a 1500-word piece, aim for roughly 150 words each for the introduction and conclusion, and 250-300 for each main section.
            """)
        turns.append((human, ans))
        if multi:
            turns.append(("Can you write the introduction based on that outline?",
                          f"Here's a draft introduction:\n\nIt's easy to have a strong opinion about {topic}, and much harder to look at what the evidence actually shows. "
                          f"Over the past decade, {topic} has moved from a niche debate to a question that affects millions of people, and the stakes keep rising. "
                          "This article looks at the research, the strongest arguments on each side, and what they mean in practice. "
                          f"The conclusion may surprise you: when it comes to {topic}, the details matter far more than the headlines suggest."))
    return turns


# --------------------------------------------------------------------------------------------
# Summarization (passages are pasted into the prompt: this is where the long prompts come from)
# --------------------------------------------------------------------------------------------

# Each article is a list of (paragraph, gist). Summaries are assembled from the gists.
ARTICLES = [
    dict(kind="meeting notes", title="Product team weekly sync", paras=[
        ("Attendees: Maria (PM), Dev (backend), Lin (frontend), Tom (QA), Aisha (design). Maria opened by reviewing last week's action items. The CSV export feature shipped on Tuesday and usage has been higher than expected, with about 1,200 exports in the first three days. Two customers reported that exports time out for very large accounts.",
         "The CSV export shipped and is popular, but times out for very large accounts."),
        ("Dev explained that the export currently runs inside the web request, which is limited to 30 seconds. He proposed moving it to a background job that emails a download link when the file is ready. The team agreed this is the right approach; Dev estimated three to four days of work, including retries and cleanup of old files.",
         "Dev will move exports to a background job that emails a download link (3-4 days)."),
        ("Lin demoed the new dashboard filters. Feedback was positive, but Aisha pointed out that the date picker is hard to use on mobile and doesn't meet contrast guidelines. Lin will pair with Aisha on a revised design before the filters go to general availability.",
         "The new dashboard filters were well received, but the date picker needs mobile and accessibility fixes."),
        ("Tom reported that the regression test suite now takes 48 minutes, up from 30 a month ago, which is slowing down releases. He suggested running the suite in parallel across four machines and tagging slow end-to-end tests so they run only nightly. Maria asked him to write up the cost of extra CI machines.",
         "Tests now take 48 minutes; Tom proposes parallelising and moving slow tests to nightly runs and will estimate the CI cost."),
        ("The team discussed the Q3 roadmap. Maria said leadership wants single sign-on for enterprise customers by the end of the quarter. Dev raised concerns about capacity given the export rework; the team agreed to revisit scope next week once the export estimate is firmer.",
         "Leadership wants SSO by the end of Q3; scope will be revisited next week because of capacity concerns."),
        ("Action items: Dev to start the background export job; Lin and Aisha to redesign the date picker; Tom to cost out parallel CI; Maria to draft the SSO requirements document. Next sync is on Thursday at 10:00.",
         "Next sync Thursday 10:00."),
    ]),
    dict(kind="news article", title="City council approves new bike lane network", paras=[
        ("The city council voted 7-2 on Tuesday night to approve a network of protected bike lanes covering 42 kilometres of streets over the next four years. The plan, which will cost an estimated 38 million dollars, is the largest investment in cycling infrastructure in the city's history.",
         "The council approved (7-2) a 42 km protected bike lane network costing about $38 million over four years."),
        ("Supporters argue the lanes will make cycling safer and reduce traffic congestion. City data shows that cyclist injuries rose 18 percent over the past five years, with most collisions occurring on the wide arterial roads included in the plan. 'People tell us they'd ride more if they felt safe,' said council member Rosa Jimenez, who sponsored the proposal.",
         "Supporters cite an 18% rise in cyclist injuries and say safer lanes will get more people riding."),
        ("Several business owners voiced concerns at the meeting about losing on-street parking. The plan removes roughly 600 of the 9,000 parking spaces along the affected streets. In response, the council added an amendment requiring the transport department to study the impact on nearby shops after the first phase and to add loading zones where needed.",
         "Some businesses worry about losing about 600 parking spaces; an amendment requires an impact study and loading zones."),
        ("The two council members who voted against the plan said the money would be better spent on repairing existing roads and on bus service. 'Our buses carry ten times as many people as bicycles do,' said council member Frank Doyle.",
         "Two opponents argued the money should go to road repairs and buses."),
        ("Construction of the first phase, a 9-kilometre east-west corridor connecting the university with downtown, is expected to begin next spring. The city will also launch an online map where residents can comment on the routes of later phases.",
         "The first 9 km phase (university to downtown) starts next spring, and residents can comment on later phases online."),
    ]),
    dict(kind="research abstract", title="Effects of a four-day work week on productivity and well-being", paras=[
        ("Background: Interest in reduced working hours has grown rapidly since 2020, but evidence on their effects remains limited and often relies on self-reported data from single companies.",
         "Evidence on four-day weeks is limited and mostly self-reported."),
        ("Methods: We analysed a six-month trial involving 61 organisations and approximately 2,900 employees who moved to a four-day week with no reduction in pay. We combined employee surveys at three points in time with company-reported revenue, absenteeism and staff turnover, and compared these with the same period in the previous year.",
         "The study followed 61 organisations (about 2,900 employees) through a six-month trial without pay cuts, using surveys and company data."),
        ("Results: Revenue remained broadly stable, rising by 1.4 percent on average compared with the previous year. Sick days fell by 65 percent and the number of staff leaving fell by 57 percent. Employees reported significant reductions in burnout, anxiety and fatigue and improvements in sleep and work-life balance.",
         "Revenue held steady (+1.4%), sick days fell 65%, resignations fell 57%, and well-being improved."),
        ("Of the participating organisations, 56 chose to continue the four-day week after the trial, and 18 made the policy permanent. Organisations that had redesigned meetings and workflows before the trial reported the smoothest transitions.",
         "56 of 61 organisations continued afterwards; preparation (redesigning meetings and workflows) made the switch smoother."),
        ("Limitations: Participating organisations volunteered and may be more suited to reduced hours than average. The trial period was relatively short, and most participants worked in office-based sectors.",
         "Limitations: self-selected, mostly office-based organisations and a short trial."),
        ("Conclusion: A well-prepared four-day week can maintain productivity while substantially improving employee well-being. Longer studies in a wider range of sectors are needed.",
         "Conclusion: a prepared four-day week can maintain productivity and improve well-being, but longer, broader studies are needed."),
    ]),
    dict(kind="product announcement", title="Introducing Aurora 2", paras=[
        ("Today we're excited to announce Aurora 2, the next generation of our smart home thermostat. Aurora 2 is 30 percent smaller than the original, has a high-contrast e-ink display that stays readable in direct sunlight, and lasts up to two years on a single set of batteries in wireless mode.",
         "Aurora 2 is a smaller smart thermostat with an e-ink display and up to two years of battery life."),
        ("The biggest change is under the hood. Aurora 2 learns your schedule in about a week and now uses local weather forecasts to pre-heat or pre-cool your home before temperatures change. In our testing across 400 homes, this reduced heating and cooling energy use by an average of 12 percent compared with a conventional programmable thermostat.",
         "It learns schedules and uses weather forecasts, cutting heating/cooling energy about 12% in tests across 400 homes."),
        ("Privacy has been a top request from our customers. Aurora 2 processes schedule learning on the device, and sharing usage data with us is now opt-in rather than opt-out. You can download or delete your data at any time from the app.",
         "Learning happens on-device, data sharing is opt-in, and users can download or delete their data."),
        ("Aurora 2 works with all major smart home platforms and supports the Matter standard out of the box. Existing Aurora owners can keep using their current mounting plate, which makes upgrading a five-minute job.",
         "It supports Matter and the major platforms and fits existing mounting plates."),
        ("Aurora 2 will be available from 15 October for 149 dollars, with pre-orders open today. Owners of the original Aurora can trade it in for a 40-dollar discount.",
         "Available 15 October for $149; pre-orders open now, with a $40 trade-in discount."),
    ]),
    dict(kind="blog post", title="What I learned from a year of learning to draw", paras=[
        ("A year ago I couldn't draw a convincing coffee mug. I decided to practise for 20 minutes every day, no matter what, and track my progress in a single sketchbook. This post is about what worked, what didn't, and what I'd tell anyone starting out.",
         "The author practised drawing 20 minutes a day for a year."),
        ("The first lesson was that consistency beats intensity. The weeks when I tried to make up for missed days with three-hour sessions were the weeks I improved least. Short, daily practice kept my hand and eye in sync and, more importantly, kept drawing from feeling like a chore.",
         "Short daily practice worked much better than occasional long sessions."),
        ("The second lesson was to draw from life as much as possible. Copying photos taught me to copy shapes, but drawing real objects, people in cafés and my own hands taught me to see form, light and proportion. My drawings improved most in the months I carried a pocket sketchbook everywhere.",
         "Drawing from life, not photos, taught proportion and form fastest."),
        ("Third, I learned to study fundamentals deliberately. I spent one month only on perspective boxes and another only on values, shading simple shapes in five tones. These exercises were boring, but they fixed problems that months of 'just drawing' hadn't.",
         "Focused months on fundamentals like perspective and values fixed persistent problems."),
        ("Finally, comparing myself to artists online nearly made me quit in month four. What helped was comparing my sketchbook only to itself. Flipping back to the first pages is still the best motivation I have.",
         "Comparing against one's own earlier work, not others online, kept motivation up."),
    ]),
    dict(kind="policy memo", title="Proposal: hybrid work guidelines", paras=[
        ("Purpose: This memo proposes company-wide guidelines for hybrid work, replacing the current mix of team-by-team arrangements that employees describe as confusing and inconsistent.",
         "The memo proposes uniform hybrid work guidelines to replace inconsistent team-by-team rules."),
        ("Current situation: Our employee survey (response rate 78 percent) shows that 64 percent of staff prefer two to three office days per week, 21 percent prefer fully remote work and 15 percent prefer the office full time. Office utilisation averages 38 percent, peaking at 70 percent on Tuesdays and Wednesdays and falling below 20 percent on Fridays.",
         "Most staff (64%) prefer 2-3 office days; office use averages 38%, peaking midweek."),
        ("Proposal: Teams will agree on two shared 'anchor days' per week when everyone is in the office, chosen to maximise collaboration. Other days are flexible. Employees may apply for fully remote arrangements with their manager's approval, reviewed annually.",
         "Teams set two shared anchor days per week; fully remote work is possible with approval."),
        ("Office changes: We will convert one floor of assigned desks into bookable desks and additional meeting rooms, and sublet the second floor of the east building from January, saving an estimated 420,000 dollars per year.",
         "Desks become bookable and one floor will be sublet, saving about $420,000 a year."),
        ("Next steps: We recommend a six-month pilot beginning next quarter, with a follow-up survey at three and six months and a decision on permanent adoption at the end of the pilot.",
         "A six-month pilot with surveys at three and six months is recommended."),
    ]),
]


def passage_from_facts(rng):
    src = pick(rng, SCIENCE + HISTORY)
    facts = src["facts"]
    n = rng.randint(4, len(facts))
    body = " ".join(facts[:n])
    gist = [facts[0], facts[1]] + ([facts[n - 1]] if n > 2 else [])
    return src["topic"], body, gist


def gen_summarize(rng, multi):
    if rng.random() < 0.15:
        a, b = sample(rng, ARTICLES, 2)
        human = (pick(rng, ["I have two documents. Summarize each one briefly and tell me if there's anything that connects them.",
                            "Give me a short summary of each of these, then one sentence on how they differ in tone or purpose."])
                 + f"\n\nDocument 1 ({a['kind']}):\n\n" + "\n\n".join(p for p, _ in a["paras"])
                 + f"\n\nDocument 2 ({b['kind']}):\n\n" + "\n\n".join(p for p, _ in b["paras"]))
        ans = (f"**Document 1 – {a['title']}** ({a['kind']}):\n\n" + bullets([g for _, g in a["paras"][:4]])
               + f"\n\n**Document 2 – {b['title']}** ({b['kind']}):\n\n" + bullets([g for _, g in b["paras"][:4]])
               + f"\n\n**How they differ:** the {a['kind']} is written for an internal audience that already knows the context, while the {b['kind']} "
               "has its own audience and purpose. There's no direct connection in content, but both describe a change and its expected impact, "
               "so both would benefit from stating the key numbers up front.")
        return [(human, ans)]
    if rng.random() < 0.3:
        topic, passage, gist = passage_from_facts(rng)
        human = pick(rng, ["Summarize this in two sentences:", "TL;DR this for me:", "Can you summarize the following text?",
                           "Give me the key points of this passage as bullet points:"]) + "\n\n" + passage
        ans = (bullets(gist) if "bullet" in human else " ".join(gist[:2]))
        return [(human, ans)]
    a = pick(rng, ARTICLES)
    k = rng.randint(3, len(a["paras"]))
    start = 0 if rng.random() < 0.7 else rng.randint(0, len(a["paras"]) - k)
    paras = a["paras"][start:start + k]
    passage = "\n\n".join(p for p, _ in paras)
    style = pick(rng, ["bullets", "short", "paragraph", "actions"])
    ask = {"bullets": pick(rng, [f"Summarize the key points of this {a['kind']} as bullet points.", "bullet point summary please:"]),
           "short": pick(rng, [f"Summarize this {a['kind']} in one or two sentences.", "tl;dr?", "Give me a one-line summary of this:"]),
           "paragraph": pick(rng, [f"Can you write a short summary of the following {a['kind']}?", "Summarize:",
                                   f"I don't have time to read this whole {a['kind']}. What does it say?"]),
           "actions": pick(rng, [f"Summarize this {a['kind']} and list any decisions or next steps.", "What are the main takeaways and what happens next?"])}[style]
    human = dress_prompt(rng, ask, preamble_p=0.25, closer_p=0.0) + "\n\n" + (f"\"{a['title']}\"\n\n" if rng.random() < 0.5 else "") + passage
    gists = [g for _, g in paras]
    if style == "bullets":
        ans = bullets(gists)
    elif style == "short":
        ans = gists[0] + (" " + gists[-1] if len(gists) > 1 and rng.random() < 0.6 else "")
    elif style == "paragraph":
        ans = f"The {a['kind']} covers {len(gists)} main points. " + " ".join(gists)
    else:
        ans = "**Summary:** " + " ".join(gists[:2]) + "\n\n**Decisions and next steps:**\n\n" + bullets(gists[2:] or gists[-1:])
    if style in ("bullets", "paragraph") and rng.random() < 0.5:
        ans = pick(rng, [f"Here's a summary of the {a['kind']}:", "Sure, here are the main points:", f"The {a['kind']} in brief:"]) + "\n\n" + ans
        ans += "\n\n" + pick(rng, [f"Overall, the key takeaway is that {lowerfirst(gists[0])}",
                                    "Let me know if you'd like a shorter version or more detail on any point.",
                                    f"If you only remember one thing: {lowerfirst(gists[-1])}"])
    turns = [(human, ans)]
    if multi:
        fus = [(pick(rng, ["Shorter please, one sentence.", "Can you condense that to a single sentence?"]), gists[0]),
               (f"What's the most important point for someone who only reads the first line?",
                f"The headline point is: {lowerfirst(gists[0])} Everything else in the {a['kind']} either explains that or follows from it."),
               ("Write a title for it.", pick(rng, [a["title"], a["title"] + ": the short version", "In brief: " + a["title"]])),
               ("Can you turn your summary into a short email to my team?",
                f"Subject: Quick summary – {a['title']}\n\nHi all,\n\nHere's a short summary of the {a['kind']}:\n\n" + bullets(gists[:3]) + "\n\nLet me know if you have questions.\n\nThanks!")]
        rng.shuffle(fus)
        turns.extend(fus[:rng.randint(1, 3)])
    return turns


# --------------------------------------------------------------------------------------------
# Translation and non-English conversations
# --------------------------------------------------------------------------------------------

# English, French, German, Spanish, Chinese (Simplified), Japanese
PHRASES = [
    ("Where is the nearest train station?", "Où est la gare la plus proche ?", "Wo ist der nächste Bahnhof?",
     "¿Dónde está la estación de tren más cercana?", "最近的火车站在哪里？", "一番近い駅はどこですか？"),
    ("I would like to book a table for two people tonight.", "Je voudrais réserver une table pour deux personnes ce soir.",
     "Ich möchte heute Abend einen Tisch für zwei Personen reservieren.", "Quisiera reservar una mesa para dos personas esta noche.",
     "我想预订今晚两个人的桌子。", "今晩、二人で予約をお願いしたいです。"),
    ("Thank you very much for your help.", "Merci beaucoup pour votre aide.", "Vielen Dank für Ihre Hilfe.",
     "Muchas gracias por su ayuda.", "非常感谢你的帮助。", "ご協力ありがとうございます。"),
    ("The meeting has been moved to Thursday at 3 pm.", "La réunion a été déplacée à jeudi à 15 heures.",
     "Das Meeting wurde auf Donnerstag um 15 Uhr verschoben.", "La reunión se ha trasladado al jueves a las 15:00.",
     "会议改到星期四下午三点。", "会議は木曜日の午後3時に変更されました。"),
    ("How much does this cost?", "Combien ça coûte ?", "Wie viel kostet das?", "¿Cuánto cuesta esto?", "这个多少钱？", "これはいくらですか？"),
    ("I'm sorry, I don't understand. Could you speak more slowly?", "Désolé, je ne comprends pas. Pourriez-vous parler plus lentement ?",
     "Entschuldigung, ich verstehe nicht. Könnten Sie bitte langsamer sprechen?", "Lo siento, no entiendo. ¿Podría hablar más despacio?",
     "对不起，我听不懂。你能说慢一点吗？", "すみません、わかりません。もう少しゆっくり話していただけますか？"),
    ("Happy birthday! I hope all your wishes come true.", "Joyeux anniversaire ! J'espère que tous tes vœux se réaliseront.",
     "Alles Gute zum Geburtstag! Ich hoffe, alle deine Wünsche gehen in Erfüllung.", "¡Feliz cumpleaños! Espero que se cumplan todos tus deseos.",
     "生日快乐！祝你心想事成。", "お誕生日おめでとう！願いがすべて叶いますように。"),
    ("Your order has been shipped and will arrive within three business days.",
     "Votre commande a été expédiée et arrivera sous trois jours ouvrables.",
     "Ihre Bestellung wurde versandt und wird innerhalb von drei Werktagen eintreffen.",
     "Su pedido ha sido enviado y llegará en un plazo de tres días hábiles.",
     "您的订单已发货，将在三个工作日内送达。", "ご注文の商品は発送済みで、3営業日以内に届きます。"),
    ("Could you recommend a good restaurant nearby?", "Pourriez-vous me recommander un bon restaurant à proximité ?",
     "Können Sie mir ein gutes Restaurant in der Nähe empfehlen?", "¿Me podría recomendar un buen restaurante cerca de aquí?",
     "你能推荐一家附近不错的餐厅吗？", "近くにいいレストランはありますか？"),
    ("I have been learning this language for two years.", "J'apprends cette langue depuis deux ans.",
     "Ich lerne diese Sprache seit zwei Jahren.", "Llevo dos años aprendiendo este idioma.",
     "我学这门语言已经两年了。", "この言語を2年間勉強しています。"),
    ("Please remember to turn off the lights when you leave.", "N'oubliez pas d'éteindre la lumière en partant.",
     "Bitte denken Sie daran, das Licht auszuschalten, wenn Sie gehen.", "Por favor, recuerde apagar las luces al salir.",
     "离开时请记得关灯。", "出かけるときは電気を消すのを忘れないでください。"),
    ("The weather is beautiful today, let's go for a walk.", "Il fait beau aujourd'hui, allons nous promener.",
     "Das Wetter ist heute schön, lass uns spazieren gehen.", "Hace buen tiempo hoy, vamos a dar un paseo.",
     "今天天气很好，我们去散步吧。", "今日はいい天気だから、散歩に行こう。"),
]
LANGS = ["English", "French", "German", "Spanish", "Chinese", "Japanese"]
LANG_NOTES = {
    "French": "French puts a space before question marks and exclamation marks, and uses « vous » as the polite form of \"you\".",
    "German": "I used the formal « Sie » form; with friends you would use « du » instead. German nouns are always capitalised.",
    "Spanish": "I used the polite « usted » form; with friends you'd switch to « tú ».",
    "Chinese": "This is in Simplified Chinese, as used in mainland China and Singapore. Taiwan and Hong Kong use Traditional characters.",
    "Japanese": "I used polite (です/ます) forms, which are appropriate with strangers and in shops.",
    "English": "",
}

NATIVE_QA = [
    ("请用简单的语言解释一下什么是机器学习。",
     "机器学习是人工智能的一个分支。简单来说，就是让计算机从大量数据中自己找出规律，而不是由程序员一条一条地写出规则。\n\n举个例子：如果你想让电脑识别猫的照片，你不需要告诉它“猫有胡子、有尖耳朵”，而是给它看成千上万张标注好的照片，它会自己学会区分猫和其他动物。\n\n常见的应用包括：\n\n- 垃圾邮件过滤\n- 语音助手\n- 推荐系统（比如视频网站推荐你可能喜欢的内容）\n- 机器翻译"),
    ("周末去北京旅游两天，有什么推荐的行程吗？",
     "两天时间可以这样安排：\n\n**第一天：** 上午参观天安门广场和故宫（建议提前在网上预约门票），下午去景山公园俯瞰故宫全景，傍晚逛南锣鼓巷和什刹海，晚上吃北京烤鸭。\n\n**第二天：** 早上出发去八达岭或慕田峪长城（慕田峪人相对少一些），下午回城后去颐和园或天坛。\n\n小贴士：北京地铁很方便，景点人多，最好早点出发。"),
    ("日本語の敬語がよくわかりません。簡単に説明してもらえますか？",
     "敬語は大きく分けて三種類あります。\n\n1. **尊敬語**：相手の動作を高めて言う言葉です。例：「先生がいらっしゃる」（行く・来る）\n2. **謙譲語**：自分の動作をへりくだって言う言葉です。例：「私が伺います」（行く）\n3. **丁寧語**：「です」「ます」を使った丁寧な言い方です。例：「これは本です」\n\nまずは丁寧語から慣れて、よく使う尊敬語と謙譲語を少しずつ覚えていくのがおすすめです。"),
    ("東京でおすすめのラーメン屋を教えてください。",
     "具体的なお店の情報は変わりやすいので、最新の口コミサイトで確認するのがおすすめですが、エリアごとの特徴をご紹介します。\n\n- **新宿・渋谷**：とんこつや家系など、さまざまなスタイルの人気店が集まっています。\n- **池袋**：つけ麺の激戦区として有名です。\n- **東京駅の「東京ラーメンストリート」**：有名店が一か所に集まっていて、観光客にも便利です。\n\n人気店は行列ができることが多いので、平日の開店直後が狙い目です。"),
    ("Peux-tu m'expliquer la différence entre « savoir » et « connaître » ?",
     "Les deux verbes se traduisent par « to know » en anglais, mais ils ne s'emploient pas de la même façon.\n\n- **Savoir** s'utilise pour des informations, des faits ou des compétences : « Je sais où il habite », « Elle sait nager ».\n- **Connaître** s'utilise pour des personnes, des lieux ou des choses avec lesquelles on est familier : « Je connais Marie », « Tu connais Paris ? ».\n\nAstuce : si le verbe est suivi d'une proposition (que, où, si...) ou d'un infinitif, c'est presque toujours *savoir*."),
    ("Was ist der Unterschied zwischen „seit“ und „seid“?",
     "Die beiden Wörter klingen gleich, haben aber ganz verschiedene Bedeutungen:\n\n- **seit** ist eine Präposition oder Konjunktion der Zeit: „Ich wohne seit drei Jahren in Berlin.“\n- **seid** ist eine Form des Verbs *sein* (2. Person Plural): „Ihr seid sehr nett.“\n\nEine Eselsbrücke: Wenn man „ihr“ davorsetzen kann, schreibt man *seid* mit d."),
    ("¿Cuál es la diferencia entre «ser» y «estar»?",
     "Ambos verbos significan «to be», pero se usan en situaciones distintas:\n\n- **Ser** se usa para características permanentes o esenciales: identidad, origen, profesión, hora. Por ejemplo: «Soy ingeniera», «Es de México».\n- **Estar** se usa para estados temporales, ubicación y resultados: «Estoy cansado», «El libro está en la mesa».\n\nAlgunos adjetivos cambian de significado: «es aburrido» (es una persona aburrida) frente a «está aburrido» (se siente aburrido en este momento)."),
]

_ZH = ("谢谢！", "不客气！还有其他问题随时问我。")
_JA = ("ありがとうございます！", "どういたしまして！他にも質問があれば、いつでもどうぞ。")
NATIVE_THANKS = [_ZH, _ZH, _JA, _JA,
                 ("Merci !", "Avec plaisir ! N'hésite pas si tu as d'autres questions."),
                 ("Danke!", "Gern geschehen! Frag ruhig, wenn du noch etwas wissen möchtest."),
                 ("¡Gracias!", "¡De nada! Si tienes más preguntas, aquí estoy.")]

EMOJI_TASKS = [
    ("Add some emojis to this tweet: Our new coffee shop opens Saturday! Free pastries for the first 50 customers.",
     "☕️ Our new coffee shop opens Saturday! 🎉 Free pastries 🥐🍩 for the first 50 customers! 🏃‍♀️💨"),
    ("What do these emojis mean? 🙏 💀 🫠 🐐",
     "- 🙏 Folded hands: \"please\" or \"thank you\"; some people read it as a high-five.\n- 💀 Skull: in online slang it means \"I'm dead (from laughing)\", i.e. something is extremely funny.\n- 🫠 Melting face: embarrassment, overwhelm, or slowly \"melting\" from heat or awkwardness.\n- 🐐 Goat: \"GOAT\", Greatest Of All Time, used to praise someone."),
    ("Turn this into an emoji-only story: a girl goes to the beach, swims, sees a shark, runs away and eats ice cream.",
     "👧➡️🏖️🏊‍♀️🌊😊🦈😱🏃‍♀️💨🍦😌"),
    ("Can you write a happy birthday message for my sister with emojis? She loves cats and travel.",
     "🎂🎉 Happy birthday to the best sister in the world! 🐱✈️ May this year bring you cuddly cats, stamped passports 🌍 and adventures everywhere you go. Love you loads! 💖🥳"),
]


def gen_translation(rng, multi):
    r = rng.random()
    if r < 0.2:
        q, a = pick(rng, NATIVE_QA)
        i = NATIVE_QA.index((q, a))
        return [(q, a)] + ([NATIVE_THANKS[i]] if multi else [])
    if r < 0.3:
        q, a = pick(rng, EMOJI_TASKS)
        return [(q, a)]
    k = rng.randint(1, 4)
    rows = sample(rng, PHRASES, k)
    target = rng.choice([1, 2, 3, 4, 4, 5, 5])
    tl = LANGS[target]
    if rng.random() < 0.75:
        src = " ".join(row[0] for row in rows)
        human = dress_prompt(rng, pick(rng, [f"Translate to {tl}: {src}", f"How do you say \"{src}\" in {tl}?",
                                             f"Can you translate this into {tl}?\n\n{src}"]), preamble_p=0.15, closer_p=0.1)
        out = " ".join(row[target] for row in rows) if target < 4 else "".join(row[target] for row in rows)
        ans = out if rng.random() < 0.25 else f"{pick(rng, ['Here is the translation:', 'In ' + tl + ':', 'Sure:'])}\n\n{out}\n\n{LANG_NOTES[tl]}".strip()
    else:
        src = (" " if target < 4 else "").join(row[target] for row in rows)
        human = dress_prompt(rng, pick(rng, [f"What does this mean in English? {src}", f"Translate from {tl} to English: {src}",
                                             f"My colleague sent me this message: \"{src}\" What does it say?"]), preamble_p=0.15, closer_p=0.1)
        ans = "It means: \"" + " ".join(row[0] for row in rows) + "\""
        if rng.random() < 0.5:
            ans += f"\n\nThe message is in {tl}. {LANG_NOTES[tl]}"
    turns = [(human, ans)]
    if multi:
        t2 = pick(rng, [i for i in range(1, 6) if i != target])
        turns.append((f"And in {LANGS[t2]}?", (" " if t2 < 4 else "").join(row[t2] for row in rows)))
        if rng.random() < 0.6:
            turns.append(("How would I pronounce the first sentence?" if t2 in (4, 5) else "Is that formal or informal?",
                          (f"Pronunciation depends a lot on tones and pitch, so I'd recommend listening to a native speaker recording, but the most important thing is to speak slowly and clearly. {LANG_NOTES[LANGS[t2]]}"
                           if t2 in (4, 5) else LANG_NOTES[LANGS[t2]] + " For a message to a friend, switch to the informal forms.")))
    return turns


# --------------------------------------------------------------------------------------------
# Data formatting (CSV / JSON / tables; outputs are computed)
# --------------------------------------------------------------------------------------------

def make_records(rng, n):
    recs = []
    for i in range(n):
        recs.append({"id": 100 + i * rng.randint(1, 7), "name": f"{pick(rng, FIRST_NAMES)} {pick(rng, LAST_NAMES)}",
                     "age": rng.randint(19, 67), "city": pick(rng, CITIES), "job": pick(rng, JOBS),
                     "active": rng.random() < 0.7})
    return recs


def to_csv(recs, cols):
    lines = [",".join(cols)]
    for r in recs:
        vals = []
        for c in cols:
            v = r[c]
            v = ("true" if v else "false") if isinstance(v, bool) else str(v)
            vals.append(f'"{v}"' if "," in v else v)
        lines.append(",".join(vals))
    return "\n".join(lines)


def to_md(recs, cols):
    head = "| " + " | ".join(cols) + " |\n|" + "|".join("---" for _ in cols) + "|"
    rows = "\n".join("| " + " | ".join(str(r[c]).lower() if isinstance(r[c], bool) else str(r[c]) for c in cols) + " |" for r in recs)
    return head + "\n" + rows


def py_type(v):
    return "boolean" if isinstance(v, bool) else "integer" if isinstance(v, int) else "string"


def gen_data(rng, multi):
    n = rng.choice([2, 3, 4, 5, 6, 8, 12])
    recs = make_records(rng, n)
    cols = sample(rng, ["id", "name", "age", "city", "job", "active"], rng.randint(3, 6))
    cols = [c for c in ["id", "name", "age", "city", "job", "active"] if c in cols]
    sub = [{c: r[c] for c in cols} for r in recs]
    kind = pick(rng, ["csv2json", "json2csv", "json2md", "fixjson", "schema", "extract", "sql"])
    if kind == "csv2json":
        human = dress_prompt(rng, pick(rng, ["Convert this CSV to JSON:", "can you turn this csv into a json array of objects?",
                                             "Please convert the following CSV into JSON. Numbers should be numbers and booleans should be booleans."])
                             + "\n\n```csv\n" + to_csv(sub, cols) + "\n```", preamble_p=0.2, closer_p=0.0)
        ans = "```json\n" + json.dumps(sub, indent=2, ensure_ascii=False) + "\n```" + maybe(
            rng, 0.6, "\n\nI converted numeric columns to numbers and `true`/`false` to JSON booleans, so the data keeps its types.")
    elif kind == "json2csv":
        human = pick(rng, ["Convert this JSON to CSV:", "json to csv please"]) + "\n\n```json\n" + json.dumps(sub, ensure_ascii=False) + "\n```"
        ans = "```csv\n" + to_csv(sub, cols) + "\n```"
    elif kind == "json2md":
        human = pick(rng, ["Turn this JSON into a markdown table:", "Can you format this data as a table?"]) + "\n\n```json\n" + json.dumps(sub, indent=2, ensure_ascii=False) + "\n```"
        ans = "Here's the table:\n\n" + to_md(sub, cols)
    elif kind == "fixjson":
        good = json.dumps(sub[:3], indent=2, ensure_ascii=False)
        bad = good.replace('"', "'", 6).replace("true", "True").replace("false", "False")
        bad = bad.replace("}\n]", "},\n]")
        human = "This JSON won't parse. What's wrong with it?\n\n```\n" + bad + "\n```"
        ans = ("There are a few problems:\n\n- JSON requires double quotes for strings and keys; single quotes aren't allowed.\n"
               "- Booleans must be lowercase `true`/`false` (`True`/`False` is Python syntax).\n"
               "- Trailing commas after the last element of an array or object aren't allowed.\n\nHere's the corrected version:\n\n```json\n" + good + "\n```"
               + maybe(rng, 0.5, "\n\nIf this came from Python, use `json.dumps(data)` instead of `str(data)`; `str` produces Python syntax, not JSON."))
    elif kind == "schema":
        obj = sub[0]
        human = "Write a JSON Schema for objects like this:\n\n```json\n" + json.dumps(obj, indent=2, ensure_ascii=False) + "\n```"
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                  "properties": {k: ({"type": py_type(v), "minimum": 0} if py_type(v) == "integer" else {"type": py_type(v)}) for k, v in obj.items()},
                  "required": list(obj), "additionalProperties": False}
        ans = "```json\n" + json.dumps(schema, indent=2) + "\n```\n\nAll fields are required and extra properties are rejected. Relax `additionalProperties` if the objects may carry other fields."
    elif kind == "extract":
        r = recs[0]
        text = (f"Hi, my name is {r['name']} and I'm {r['age']} years old. I work as a {r['job']} in {r['city']}"
                + (" and I'm currently looking for new opportunities." if r["active"] else "."))
        human = f"Extract the name, age, job and city from this text and return JSON only:\n\n\"{text}\""
        ans = json.dumps({"name": r["name"], "age": r["age"], "job": r["job"], "city": r["city"]}, ensure_ascii=False)
    else:
        human = "Write a SQL CREATE TABLE statement and INSERT statements for this data:\n\n```json\n" + json.dumps(sub, indent=2, ensure_ascii=False) + "\n```"
        types = {"id": "INTEGER PRIMARY KEY", "name": "TEXT NOT NULL", "age": "INTEGER", "city": "TEXT", "job": "TEXT", "active": "BOOLEAN"}
        ddl = "CREATE TABLE people (\n" + ",\n".join(f"    {c} {types[c]}" for c in cols) + "\n);"

        def lit(v):
            return ("TRUE" if v else "FALSE") if isinstance(v, bool) else str(v) if isinstance(v, int) else "'" + v.replace("'", "''") + "'"
        ins = "INSERT INTO people (" + ", ".join(cols) + ") VALUES\n" + ",\n".join("    (" + ", ".join(lit(r[c]) for c in cols) + ")" for r in sub) + ";"
        ans = "```sql\n" + ddl + "\n\n" + ins + "\n```"
    turns = [(human, ans)]
    if multi:
        fus = [("Now give me the same data as YAML.",
                "```yaml\n" + "\n".join("- " + "\n  ".join(f"{c}: {str(r[c]).lower() if isinstance(r[c], bool) else r[c]}" for c in cols) for r in sub) + "\n```"),
               ("Sort it by " + cols[-1] + " and show it as a table.",
                to_md(sorted(sub, key=lambda r: (str(r[cols[-1]]), str(r[cols[0]]))), cols)),
               ("How many records are there?", f"There are {len(sub)} records." + (f" The average age is {sum(r['age'] for r in sub) / len(sub):.1f}." if "age" in cols else ""))]
        rng.shuffle(fus)
        turns.extend(fus[:rng.randint(1, 3)])
    return turns


# --------------------------------------------------------------------------------------------
# Role-play (naturally multi-turn)
# --------------------------------------------------------------------------------------------

ROLEPLAYS = [
    dict(setup="Let's role-play. You're the innkeeper of a medieval tavern called The Crooked Lantern, and I'm a tired traveller arriving at night. Stay in character.",
         lines=[("*pushes open the door and shakes off the rain* Evening. Do you have a room for the night?",
                 "*looks up from polishing a tankard* Evenin', stranger! Aye, you've luck on your side; one room left, up the stairs and to the left. Three silver for the night, and that includes a bowl of stew and a dry blanket. Come warm yourself by the fire first, you look soaked to the bone."),
                ("I'll take it. What's in the stew?",
                 "Mutton, turnips, a few carrots and a good splash of ale, simmered since noon. My wife's recipe; folks ride two villages over for it. There's fresh bread too, if the miller's boy didn't eat it all."),
                ("Have you heard any news from the road north?",
                 "*leans in and lowers voice* Only rumours. Merchants say the bridge at Ashford washed out in last week's storm, so carts are going the long way round through the forest. And some swear they've seen lights moving in the old watchtower at night. I don't hold with ghost stories, mind you... but I'd not travel that road after dark."),
                ("Interesting. I'm heading that way tomorrow. Any advice?",
                 "Leave at first light and keep to the main track. There's a shrine by the mile-stone where you can water your horse. If anyone on the road asks your business, tell 'em you're a pilgrim; bandits leave pilgrims be, mostly. And take a loaf of bread from the kitchen, on the house."),
                ("Thank you, innkeeper. Good night.",
                 "Good night to you, traveller. Mind the third stair, it creaks something awful. *hands over a brass key* Sleep well.")]),
    dict(setup="Can you act as an interviewer for a junior data analyst position? Ask me one question at a time and give feedback on my answers.",
         lines=[("I'm ready, let's start.",
                 "Great, let's begin. First question: **Tell me about a project where you used data to answer a question or solve a problem.** Take your time."),
                ("In my last internship I analysed customer churn. I pulled data from our database with SQL, cleaned it in pandas and found that customers who didn't use a key feature in their first week were three times more likely to cancel. We added an onboarding email about that feature.",
                 "Good answer. You described the tools, a concrete finding and the action it led to. To make it stronger, mention the result of the onboarding email if you know it (e.g. \"churn dropped by X%\") and briefly say how you checked the finding wasn't a coincidence.\n\nNext question: **How would you explain a technical finding to a non-technical stakeholder?**"),
                ("I'd focus on what it means for them instead of the method, use a simple chart, and avoid jargon.",
                 "That's the right instinct, but it's a bit short. Interviewers like an example: describe a time you did this, the chart you chose and how the stakeholder responded. Aim for three to four sentences.\n\nNext: **What would you do if you found an error in a report that had already been sent to management?**"),
                ("I would tell my manager right away, explain the impact, and send a corrected version.",
                 "Good: honesty and speed are exactly what they're looking for. You could add that you'd find the root cause and put a check in place so it doesn't happen again.\n\nThat's the end of the practice round. Overall: clear, honest answers; main improvement is to add concrete examples and results. Would you like to try some technical SQL questions next?")]),
    dict(setup="Pretend you are a friendly tour guide in ancient Rome in the year 100 CE, showing me around the city.",
         lines=[("Salve! Where should we start?",
                 "Salve, amice! We start at the heart of it all, the Forum Romanum. See the Curia there, where the Senate meets, and the Rostra, the speakers' platform decorated with the bronze prows of captured ships. Watch your purse in this crowd!"),
                ("What's that huge building in the distance?",
                 "Ah, that's the Flavian Amphitheatre, finished only twenty years ago under Emperor Titus. It holds some fifty thousand people. Tomorrow there are games; if you want a seat in the shade, we should get there at dawn."),
                ("Where do ordinary people eat?",
                 "Most Romans live in insulae, apartment blocks, without proper kitchens, so they eat at a thermopolium, a street counter with jars of hot food set into the stone. Try the lentils with garum, our fish sauce; you'll either love it or never forgive me."),
                ("What about the baths?",
                 "The baths are where all Rome meets: you go from the warm tepidarium to the hot caldarium, then plunge into the cold frigidarium. You can exercise, get a massage, read in the library and hear every piece of gossip in the city. Entry costs just a quadrans, the smallest coin, so everyone goes.")]),
    dict(setup="You are a patient customer support agent for an internet provider. I'm a customer whose internet keeps dropping.",
         lines=[("Hi, my internet has been disconnecting every evening for the past week. It's really frustrating.",
                 "I'm sorry to hear that, I know how frustrating unreliable internet is, especially in the evening. Let's sort it out. Could you tell me whether the drops affect all devices or just one, and whether it's over Wi-Fi, a cable, or both?"),
                ("All devices, and it happens on Wi-Fi. I haven't tried a cable.",
                 "Thanks, that helps. Since all devices are affected, it could be the router or the line itself. Could you check the lights on your router the next time it drops? If the \"internet\" or \"WAN\" light goes red or off, the connection from our side is dropping. If it stays green, it's more likely a Wi-Fi issue."),
                ("I checked, the internet light went red last night around 8 pm.",
                 "That's very useful, thank you. A red internet light means the router lost its connection to our network. I've run a line test from here and I can see a high error rate on your line in the evenings, which suggests a fault outside your home. I'm booking a technician to check the line; the earliest slot is Thursday between 8 am and 12 pm. Does that work for you?"),
                ("Thursday morning is fine.",
                 "Perfect, you're booked for Thursday, 8 am to 12 pm. You'll get a confirmation text with the technician's details. In the meantime, restarting the router after a drop should restore the connection. I've also added a credit for the days affected to your next bill. Is there anything else I can help with today?")]),
    dict(setup="Act as a Socratic tutor. Don't give me answers directly; ask guiding questions. Topic: why do heavier objects not fall faster?",
         lines=[("I always thought heavy things fall faster. Aren't they pulled harder by gravity?",
                 "Good starting point! You're right that gravity pulls harder on a heavier object. So let me ask: if a heavier object is pulled harder, is it also harder or easier to *get moving*?"),
                ("Harder, I guess, because it has more mass.",
                 "Exactly. So we have two effects: a bigger pull, and more resistance to acceleration. What do you think happens if both of them grow in the same proportion as the mass?"),
                ("Then they cancel out? So the acceleration is the same?",
                 "That's it! Newton's second law says a = F/m, and the gravitational force is F = m·g, so a = m·g/m = g for any mass. Now, one more question: if that's true, why does a feather fall more slowly than a hammer here on Earth?"),
                ("Air resistance!",
                 "Perfect. Air resistance depends on shape and speed, not mass, so it affects a light, fluffy feather much more. On the Moon, with no air, Apollo 15 astronaut David Scott dropped a hammer and a feather and they landed at the same time. You reasoned your way to the whole idea yourself!")]),
]


def gen_roleplay(rng, multi):
    rp = pick(rng, ROLEPLAYS)
    lines = rp["lines"]
    setup = pick(rng, ["", "", "For fun: ", "Let's play a game. ", "I'm bored, entertain me. ", "Something different today. "]) + rp["setup"]
    rp = dict(rp, setup=setup)
    if not multi:
        return [(rp["setup"] + " " + lines[0][0], lines[0][1])]
    k = rng.randint(3, len(lines))
    if rng.random() < 0.4 and "interviewer" not in rp["setup"]:
        ready = pick(rng, ["Of course! I'm ready whenever you are.", "Sounds fun, let's begin. I'll stay in character.",
                           "Happy to. Go ahead whenever you're ready!"])
        return [(rp["setup"], ready)] + list(lines[:k - 1])
    return [(rp["setup"] + " " + lines[0][0], lines[0][1])] + list(lines[1:k])


# --------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------

CATEGORIES = [  # (generator, weight): programming-heavy, like real ShareGPT
    (gen_programming, 24), (gen_writing, 11), (gen_summarize, 11), (gen_science, 8), (gen_history, 6),
    (gen_math, 8), (gen_cooking, 5), (gen_travel, 5), (gen_translation, 7), (gen_data, 7),
    (gen_advice, 6), (gen_trivia, 3), (gen_roleplay, 3),
]


def first_sentence(text):
    import re
    for block in text.split("\n\n"):
        b = block.strip()
        if not b or b.startswith(("```", "|", "#")) or b.endswith(":"):
            continue
        b = re.sub(r"^(\d+\.|-)\s+", "", b.splitlines()[0]).replace("**", "")
        m = re.search(r"^(.+?[.!?])(\s|$)", b)
        return m.group(1) if m else b
    return text.strip().splitlines()[0]


def generic_followups(rng, turns):
    prev = turns[-1][1]
    return [(pick(rng, ["Can you summarize your answer in one sentence?", "In one sentence?", "tl;dr of that?"]),
             f"In one sentence: {lowerfirst(first_sentence(prev))}"),
            (pick(rng, THANKS_HUMAN), pick(rng, THANKS_GPT))]


def make_id(rng, used):
    alphabet = string.ascii_letters + string.digits
    while True:
        cid = "".join(rng.choice(alphabet) for _ in range(7)) + "_0"
        if cid not in used:
            used.add(cid)
            return cid


def to_sharegpt(cid, pairs):
    conv = []
    for h, g in pairs:
        conv.append({"from": "human", "value": h})
        conv.append({"from": "gpt", "value": g})
    return {"id": cid, "conversations": conv}


def generate(seed, n, multi_fraction, gens=None):
    rng = random.Random(seed)
    gens = gens or CATEGORIES
    funcs = [g for g, _ in gens]
    weights = [w for _, w in gens]
    used, out, seen = set(), [], set()
    attempts = 0
    n_multi = round(n * multi_fraction)              # exact share of multi-turn conversations
    flags = [True] * n_multi + [False] * (n - n_multi)
    rng.shuffle(flags)
    while len(out) < n:
        gen = rng.choices(funcs, weights)[0]
        multi = flags[len(out)]
        pairs = list(gen(rng, multi))
        attempts += 1
        if attempts > 100 * n:
            raise RuntimeError("could not generate enough distinct conversations")
        if multi:
            if len(pairs) < 2:
                extra = generic_followups(rng, pairs)
                pairs.extend(extra[:rng.randint(1, 2)])
            pairs = pairs[:5]                       # 4-10 turns
        else:
            pairs = pairs[:1]
        key = pairs[0][0]
        if key in seen:                             # never emit the same opening prompt twice
            continue
        seen.add(key)
        out.append(to_sharegpt(make_id(rng, used), pairs))
    return out


# --------------------------------------------------------------------------------------------
# Deliberate edge cases (appended after the regular conversations; see README.md)
# --------------------------------------------------------------------------------------------

def edge_cases():
    long_doc = "\n\n".join(
        f"## {a['title']}\n\n" + "\n\n".join(p for p, _ in a["paras"]) for a in ARTICLES)
    long_gists = [a["paras"][0][1] for a in ARTICLES]
    review_doc = "\n\n".join(code_block(rv["lang"], rv["code"]) for rv in REVIEWS[:2])
    review_answer = "\n\n".join(
        f"### {LANG_NAMES[rv['lang']]}: {rv['desc']}\n\n" + "\n".join(f"{i}. **{t}.** {b}" for i, (t, b) in enumerate(rv["issues"], 1))
        + "\n\nHere is the full list of fixes for this file, expanded:\n\n"
        + "\n".join(f"- {t}: {b} This matters because it affects correctness, security or maintainability, and it is cheap to fix now compared with after release." for t, b in rv["issues"])
        for rv in REVIEWS[:2])
    return [
        # Only one turn: dropped by vLLM's `len(conversations) >= 2` filter.
        ("edge_single_turn", [{"from": "human", "value": "Can you recommend three good books about the history of mathematics, and say in a sentence why each one is worth reading?"}]),
        # Empty completion: output length 0 < 4 tokens.
        ("edge_empty_answer", [{"from": "human", "value": "Please translate the following sentence into Italian: \"The museum is closed on Mondays.\""},
                               {"from": "gpt", "value": ""}]),
        # Very short completion: fewer than 4 tokens.
        ("edge_short_answer", [{"from": "human", "value": "Is 17 a prime number? Answer with yes or no only."},
                               {"from": "gpt", "value": "Yes."}]),
        # Very short prompt: fewer than 4 tokens.
        ("edge_short_prompt", [{"from": "human", "value": "hi"},
                               {"from": "gpt", "value": "Hello! How can I help you today? I can answer questions, explain concepts, help with writing or code, and more."}]),
        # Prompt alone is longer than 1024 tokens.
        ("edge_long_prompt", [{"from": "human", "value": "I've pasted six internal documents below. Give me a one-line summary of each.\n\n" + long_doc},
                              {"from": "gpt", "value": "\n".join(f"{i}. **{a['title']}:** {g}" for i, (a, g) in enumerate(zip(ARTICLES, long_gists), 1))}]),
        # Prompt fits (<= 1024) but prompt + completion exceeds 2048 tokens.
        ("edge_total_too_long", [{"from": "human", "value": "Review both of these files in detail. For every problem, explain it and how to fix it. Be exhaustive.\n\n" + review_doc},
                                 {"from": "gpt", "value": review_answer}]),
    ]


# Small, fast fixture for tests: short single- and multi-turn conversations only.
def tiny(seed=TINY_SEED, n=N_TINY):
    rng = random.Random(seed)
    out, used = [], set()
    gens = [gen_trivia, gen_math, gen_translation, gen_advice]
    i = 0
    while len(out) < n:
        gen = gens[i % len(gens)]
        i += 1
        pairs = list(gen(rng, i % 3 == 0))[:2]
        if sum(len(h) + len(g) for h, g in pairs) > 1200:
            continue
        out.append(to_sharegpt(make_id(rng, used), pairs))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("-n", type=int, default=N_REGULAR, help="number of regular conversations (edge cases are added on top)")
    ap.add_argument("--tiny", action="store_true", help=f"write the {N_TINY}-conversation test fixture instead")
    ap.add_argument("-o", "--output", type=Path, default=None)
    args = ap.parse_args()
    if args.tiny:
        data = tiny()
        path = args.output or HERE / "tiny_sharegpt.json"
    else:
        data = generate(args.seed, args.n, MULTI_TURN_FRACTION)
        data += [{"id": cid, "conversations": conv} for cid, conv in edge_cases()]
        path = args.output or HERE / "sharegpt_sample.json"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    turns = sum(len(c["conversations"]) for c in data)
    print(f"wrote {path} ({len(data)} conversations, {turns} turns, {path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
