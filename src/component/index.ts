/** The library entry (dist-lib/fastcache-chat.js): defines <fastcache-chat>. */
import { FastcacheChat } from './fastcache-chat.ts';

export { FastcacheChat };
export type { FastcacheChatEvents } from './fastcache-chat.ts';

if (!customElements.get('fastcache-chat')) customElements.define('fastcache-chat', FastcacheChat);

declare global {
  interface HTMLElementTagNameMap {
    'fastcache-chat': FastcacheChat;
  }
}
