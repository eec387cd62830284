// Renders an answer's Markdown safely: react-markdown builds React elements from the syntax
// tree; raw HTML in the text is shown as the literal text it is, never parsed (no rehype-raw, no
// dangerouslySetInnerHTML); link URLs go through react-markdown's default filter (no
// javascript: links). components.test.tsx checks all three. While the answer streams, a cursor is
// placed at the end of the text, inside the last block, so it follows the words.

import { memo, useState, type ComponentPropsWithoutRef, type ReactNode } from 'react';
import ReactMarkdown, { type Components } from 'react-markdown';
import remarkGfm from 'remark-gfm';
import type { Element, ElementContent, Root } from 'hast';

const VOID_ELEMENTS = new Set(['br', 'hr', 'img', 'input']);

/** rehype plugin: appends the streaming cursor to the deepest last element of the tree. */
function rehypeCursor() {
  return (tree: Root) => {
    let parent: Root | Element = tree;
    for (;;) {
      const children: ElementContent[] = parent.children as ElementContent[];
      let last: ElementContent | undefined;
      for (let i = children.length - 1; i >= 0; i -= 1) {
        const child = children[i]!;
        if (child.type === 'element' || (child.type === 'text' && child.value.trim() !== '')) {
          last = child;
          break;
        }
      }
      if (last && last.type === 'element' && !VOID_ELEMENTS.has(last.tagName)) parent = last;
      else break;
    }
    // Code blocks end with a newline; keep the cursor on the line being written.
    const tail = parent.children[parent.children.length - 1];
    if (parent.type === 'element' && parent.tagName === 'code' && tail?.type === 'text') {
      tail.value = tail.value.replace(/\n$/, '');
    }
    parent.children.push({
      type: 'element',
      tagName: 'span',
      properties: { className: ['cursor'], ariaHidden: 'true', dataTestid: 'streaming-cursor' },
      children: [],
    });
  };
}

function textOf(node: ReactNode): string {
  if (typeof node === 'string' || typeof node === 'number') return String(node);
  if (Array.isArray(node)) return node.map(textOf).join('');
  if (node && typeof node === 'object' && 'props' in node) {
    return textOf((node.props as { children?: ReactNode }).children);
  }
  return '';
}

function CodeBlock({ children, ...rest }: ComponentPropsWithoutRef<'pre'>) {
  const [copied, setCopied] = useState(false);
  const code = Array.isArray(children) ? children[0] : children;
  const className =
    code && typeof code === 'object' && 'props' in code
      ? String((code.props as { className?: string }).className ?? '')
      : '';
  const language = /language-([\w+-]+)/.exec(className)?.[1];
  const canCopy = typeof navigator !== 'undefined' && !!navigator.clipboard;
  const copy = () => {
    void navigator.clipboard.writeText(textOf(children).replace(/\n$/, '')).then(() => {
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    });
  };
  return (
    <div className="code-block">
      <div className="code-block__bar">
        <span className="code-block__lang">{language ?? 'code'}</span>
        {canCopy && (
          <button type="button" className="code-block__copy" onClick={copy} aria-label="Copy code">
            {copied ? 'Copied' : 'Copy'}
          </button>
        )}
      </div>
      <pre {...rest}>{children}</pre>
    </div>
  );
}

const components: Components = {
  pre: ({ node: _node, ...props }) => <CodeBlock {...props} />,
  a: ({ node: _node, ...props }) => <a {...props} target="_blank" rel="noopener noreferrer" />,
  table: ({ node: _node, ...props }) => (
    <div className="table-scroll">
      <table {...props} />
    </div>
  ),
};

const plugins = [remarkGfm];
const withCursor = [rehypeCursor];

export const Markdown = memo(function Markdown({
  content,
  streaming,
}: {
  content: string;
  streaming: boolean;
}) {
  return (
    <div className="markdown">
      <ReactMarkdown
        remarkPlugins={plugins}
        rehypePlugins={streaming ? withCursor : undefined}
        components={components}
      >
        {content}
      </ReactMarkdown>
    </div>
  );
});
