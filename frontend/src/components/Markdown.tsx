// Renders an answer's Markdown safely with markdown-to-jsx (7.7), which builds React elements
// directly: raw HTML in the text is shown as the literal text it is, never parsed
// (disableParsingRawHTML, no dangerouslySetInnerHTML); link and image URLs pass markdown-to-jsx's
// sanitizer and then the allow-list react-markdown used (http(s), mailto, irc(s), xmpp or
// relative), so javascript:/vbscript:/data: never become an href or src; attributes written after
// a code fence's language are dropped; headings get no ids. GFM: tables (in a .table-scroll box),
// ~~strikethrough~~, task lists (disabled boxes), fenced code in CodeBlock (language label, Copy
// button); a code fence still open at the end of the text is closed there, as in CommonMark.
//
// Long answers stream in thousands of chunks and re-render up to once a frame, so the text is cut
// into top-level blocks at blank lines outside code fences (a blank line followed by an indented
// line, or by another item of a list the block holds, does not cut), and each block is a memoized
// component: while streaming only the last block is parsed again. With reference-style link
// definitions ([1]: url) the text is parsed whole, as those link across blocks. Before parsing,
// two markdown-to-jsx quirks are undone line by line (outside fences): intraword underscores
// (snake_case_name) are escaped so they do not become emphasis, and backslashes in inline code are
// doubled so markdown-to-jsx's unescaping gives them back (`\d+\.` stays as written). While the
// answer streams, a cursor is put at the end of the text inside the deepest last element of the
// last block (the last <li>, the <code> of an unfinished code block...), found by walking the
// React elements markdown-to-jsx returns, so it follows the words. Images are links to
// them, never loaded. Markdown.test.tsx checks all of this.

import {
  cloneElement,
  isValidElement,
  memo,
  useMemo,
  type ComponentPropsWithoutRef,
  type ReactElement,
  type ReactNode,
} from 'react';
import { compiler, sanitizer as defaultSanitizer, type MarkdownToJSX } from 'markdown-to-jsx';
import { useFlash } from '../hooks/useFlash';
import { copyText } from '../lib/clipboard';

// ---------------------------------------------------------------------------------------------
// Splitting into blocks

const FENCE = /^\s*(`{3,}|~{3,})(.*)$/;
const FENCE_CLOSE = /^\s*(`{3,}|~{3,})\s*$/;
/** List item starts as markdown-to-jsx recognizes them (`1.` ordered, `*`/`+`/`-` unordered). */
const ORDERED_ITEM = /^\d+\. /;
const UNORDERED_ITEM = /^[*+-] /;
/** A reference-style link or footnote definition: `[id]: url`, `[^1]: note`. */
const DEFINITION = /^ {0,3}\[[^\]\n]+\]:/;

function listKind(line: string): 'ol' | 'ul' | null {
  if (ORDERED_ITEM.test(line)) return 'ol';
  if (UNORDERED_ITEM.test(line)) return 'ul';
  return null;
}

/** The fence a line opens (its ``` or ~~~ run), or null. A backtick fence's info string has no
 * backtick (so ```inline``` is not a fence). */
function fenceOpened(line: string): string | null {
  const m = FENCE.exec(line);
  if (!m) return null;
  const marker = m[1]!;
  if (marker[0] === '`' && m[2]!.includes('`')) return null;
  return marker;
}

function closesFence(line: string, marker: string): boolean {
  const m = FENCE_CLOSE.exec(line);
  return !!m && m[1]![0] === marker[0] && m[1]!.length >= marker.length;
}

const CODE_SPAN = /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g;
const INTRAWORD_UNDERSCORES = /([\p{L}\p{N}])(_+)(?=[\p{L}\p{N}])/gu;

function escapeIntraword(text: string): string {
  if (!text.includes('_')) return text;
  // Not inside URLs or e-mail addresses: markdown-to-jsx keeps those characters as written.
  return text.replace(/\S+/g, (word) =>
    /:\/\/|^<|@|www\./i.test(word)
      ? word
      : word.replace(INTRAWORD_UNDERSCORES, (_m, before: string, run: string) =>
          before + run.replace(/_/g, '\\_'),
        ),
  );
}

/** Undoes two markdown-to-jsx quirks on one line of text (outside code fences). */
function fixLine(line: string): string {
  if (!line.includes('_') && !line.includes('\\')) return line;
  if (DEFINITION.test(line)) return line;
  let out = '';
  let last = 0;
  for (const m of line.matchAll(CODE_SPAN)) {
    const code = m[2]!.replace(/\\(?=[^0-9A-Za-z\s])/g, '\\\\');
    out += escapeIntraword(line.slice(last, m.index)) + m[1] + code + m[1];
    last = m.index + m[0].length;
  }
  return out + escapeIntraword(line.slice(last));
}

/**
 * Cuts an answer into top-level blocks that parse on their own as they would within the whole
 * text: at blank lines outside code fences, except before an indented line (a list item's or
 * code block's continuation) or before another item of a list kind the block already holds (a
 * loose list stays one list). With `whole` (or when the text has link definitions) the text stays
 * one block. An unclosed fence at the end is closed, as CommonMark does at the end of the text.
 * Each block starts with a newline (markdown-to-jsx drops leading newlines) so that it does not
 * take a text starting with a `---` line for front matter and drop all up to the last `---` line.
 */
export function splitBlocks(content: string, whole = false): string[] {
  const text = content.replace(/\r\n?/g, '\n');
  const single = whole || text.split('\n').some((line) => DEFINITION.test(line));
  const blocks: string[] = [];
  let current: string[] = [];
  let blanks: string[] = [];
  let kinds = new Set<'ol' | 'ul'>();
  let fence: string | null = null;

  for (const line of text.split('\n')) {
    if (fence !== null) {
      current.push(line);
      if (closesFence(line, fence)) fence = null;
      continue;
    }
    if (line.trim() === '') {
      if (current.length > 0) blanks.push(line);
      continue;
    }
    const kind = listKind(line);
    if (blanks.length > 0) {
      const continues = single || /^\s/.test(line) || (kind !== null && kinds.has(kind));
      if (continues) {
        current.push(...blanks);
      } else {
        blocks.push(current.join('\n'));
        current = [];
        kinds = new Set();
      }
      blanks = [];
    }
    if (kind) kinds.add(kind);
    fence = fenceOpened(line);
    current.push(fence === null ? fixLine(line) : line);
  }
  if (current.length > 0) {
    blocks.push(current.join('\n') + (fence === null ? '' : `\n${fence}`));
  }
  return blocks.map((block) => `\n${block}`);
}

// ---------------------------------------------------------------------------------------------
// Rendering

function textOf(node: ReactNode): string {
  if (typeof node === 'string' || typeof node === 'number') return String(node);
  if (Array.isArray(node)) return node.map(textOf).join('');
  if (node && typeof node === 'object' && 'props' in node) {
    return textOf((node.props as { children?: ReactNode }).children);
  }
  return '';
}

/** markdown-to-jsx renders a code block as <pre><code className="lang-x" {...attrs}>; the attrs
 * come from the text after the fence's language (```js style="..."), so only the text is kept. */
function CodeBlock({ children }: ComponentPropsWithoutRef<'pre'>) {
  const [copied, flash] = useFlash<'Copied' | 'Copy failed'>(1_500);
  const code = isValidElement(children)
    ? (children.props as { className?: string; children?: ReactNode })
    : { className: '', children };
  const language = /(?:^|\s)lang(?:uage)?-([\w+-]+)/.exec(code.className ?? '')?.[1];
  const copy = () => {
    copyText(textOf(code.children).replace(/\n$/, '')).then(
      () => flash('Copied'),
      () => flash('Copy failed'),
    );
  };
  return (
    <div className="code-block">
      <div className="code-block__bar">
        <span className="code-block__lang">{language ?? 'code'}</span>
        <button type="button" className="code-block__copy" onClick={copy} aria-label="Copy code">
          {copied ?? 'Copy'}
        </button>
      </div>
      <pre>
        <code className={language ? `language-${language}` : undefined}>{code.children}</code>
      </pre>
    </div>
  );
}

function Table(props: ComponentPropsWithoutRef<'table'>) {
  return (
    <div className="table-scroll">
      <table {...props} />
    </div>
  );
}

const noId = { props: { id: undefined } };

/**
 * An image in an answer is a link to it, never loaded by itself: a model's text (or a prompt
 * injected into it) could otherwise make the page fetch any URL, with data in it, unasked.
 */
function Image({ src, alt }: ComponentPropsWithoutRef<'img'>) {
  const label = alt?.trim() || 'image';
  if (!src) return <span className="md-image">[{label}]</span>;
  return (
    <a className="md-image" href={src} target="_blank" rel="noopener noreferrer" title={src}>
      [{label}]
    </a>
  );
}

const overrides: MarkdownToJSX.Overrides = {
  pre: CodeBlock,
  table: Table,
  img: Image,
  a: { props: { target: '_blank', rel: 'noopener noreferrer' } },
  // Task list boxes are shown, not edited.
  input: { props: { disabled: true } },
  // No slug ids on headings (they would repeat across answers and name window properties).
  h1: noId,
  h2: noId,
  h3: noId,
  h4: noId,
  h5: noId,
  h6: noId,
};

const SAFE_PROTOCOL = /^(https?|ircs?|mailto|xmpp)$/i;

/** markdown-to-jsx's sanitizer (no javascript:, vbscript:, data: other than images, even
 * percent-encoded), then react-markdown's allow-list: a URL with a scheme must be http(s),
 * mailto, irc(s) or xmpp. A refused URL gives no href (or src) at all. */
function sanitizeUrl(url: string): string | null {
  if ((defaultSanitizer(url) as string | null) === null) return null;
  const colon = url.indexOf(':');
  const question = url.indexOf('?');
  const hash = url.indexOf('#');
  const slash = url.indexOf('/');
  if (
    colon === -1 ||
    (slash !== -1 && colon > slash) ||
    (question !== -1 && colon > question) ||
    (hash !== -1 && colon > hash) ||
    SAFE_PROTOCOL.test(url.slice(0, colon))
  ) {
    return url;
  }
  return null;
}

/**
 * Above this many `[` in one block, it is shown as plain text: markdown-to-jsx's link rules
 * backtrack, so a run of unclosed `[a](` takes superlinear time (300 of them ~40 ms, 1,000
 * ~0.8 s, 3,000 ~13 s), which broken or hostile model output could use to freeze the tab. A
 * real answer's list of 300 links parses in ~25 ms and stays Markdown.
 */
export const MAX_BRACKETS_PER_BLOCK = 400;

function brackets(text: string): number {
  let count = 0;
  for (let at = text.indexOf('['); at !== -1; at = text.indexOf('[', at + 1)) count += 1;
  return count;
}

/** One block's (or a whole text's) React nodes. Exported for the tests. */
export function compileMarkdown(text: string): ReactNode[] {
  if (brackets(text) > MAX_BRACKETS_PER_BLOCK) return [<p key="0">{text.trim()}</p>];
  try {
    return compiler(text, {
      disableParsingRawHTML: true,
      forceBlock: true,
      wrapper: null,
      overrides,
      sanitizer: sanitizeUrl,
      // markdown-to-jsx maps &quot; to a curly quote.
      namedCodesToUnicode: { quot: '"' },
    });
  } catch {
    // The parser recurses: thousands of nested `>` overflow the stack. Show the text as it is
    // rather than take the page down.
    return [<p key="0">{text.trim()}</p>];
  }
}

const VOID_ELEMENTS = new Set(['br', 'hr', 'img', 'input']);

const CURSOR = (
  <span
    key="streaming-cursor"
    className="cursor"
    aria-hidden="true"
    data-testid="streaming-cursor"
  />
);

function hasContent(node: ReactNode): boolean {
  if (typeof node === 'string') return node.trim() !== '';
  if (typeof node === 'number') return true;
  if (Array.isArray(node)) return node.some(hasContent);
  return isValidElement(node);
}

function canHoldCursor(node: ReactNode): boolean {
  if (Array.isArray(node)) return hasContent(node);
  return isValidElement(node) && !(typeof node.type === 'string' && VOID_ELEMENTS.has(node.type));
}

/** Children with the cursor at the end of the text: inside the last element that has content
 * (recursively, also into override components' children), else after the last child. */
function withCursor(children: ReactNode): ReactNode {
  if (Array.isArray(children)) {
    for (let i = children.length - 1; i >= 0; i -= 1) {
      const child: ReactNode = children[i];
      if (!hasContent(child)) continue;
      if (!canHoldCursor(child)) break;
      const copy = children.slice();
      copy[i] = withCursor(child);
      return copy;
    }
    return [...children, CURSOR];
  }
  if (isValidElement(children) && canHoldCursor(children)) {
    const element = children as ReactElement<{ children?: ReactNode }>;
    let inner = element.props.children;
    // Code ends with a newline; keep the cursor on the line being written.
    if (element.type === 'code' && typeof inner === 'string') inner = inner.replace(/\n$/, '');
    const next = withCursor(inner);
    // Children passed one by one, as markdown-to-jsx created them (no key warnings).
    return Array.isArray(next)
      ? cloneElement(element, undefined, ...next)
      : cloneElement(element, undefined, next);
  }
  if (children === undefined || children === null || children === '' || children === false) {
    return CURSOR;
  }
  return [children, CURSOR];
}

const Block = memo(function Block({ text, cursor }: { text: string; cursor: boolean }) {
  const nodes = useMemo(() => compileMarkdown(text), [text]);
  return <>{cursor ? withCursor(nodes) : nodes}</>;
});

export const Markdown = memo(function Markdown({
  content,
  streaming,
}: {
  content: string;
  streaming: boolean;
}) {
  const blocks = useMemo(() => splitBlocks(content), [content]);
  return (
    <div className="markdown">
      {blocks.map((text, i) => (
        <Block key={i} text={text} cursor={streaming && i === blocks.length - 1} />
      ))}
      {streaming && blocks.length === 0 && CURSOR}
    </div>
  );
});
